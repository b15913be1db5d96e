package monitor

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
)

func newTestClient(t *testing.T, s *attachSet, tty bool) (cl *attachClient, out, errR *os.File) {
	t.Helper()
	or, ow, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	er, ew, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { or.Close(); er.Close() })
	cl = &attachClient{q: make(chan attachChunk, attachQueue), gone: make(chan struct{}), out: ow, errw: ew, writerDone: make(chan struct{})}
	if tty {
		ew.Close()
		cl.errw = nil
	}
	s.add(cl)
	go s.writer(cl)
	return cl, or, er
}

// The copier's reads reach every attached client on the right stream, and
// a removed client's pipes end after what was queued.
func TestAttachFanOut(t *testing.T) {
	c := &container{}
	var s = &c.attach
	a, aOut, aErr := newTestClient(t, s, false)
	b, bOut, _ := newTestClient(t, s, true)

	src := io.MultiReader(strings.NewReader("out1\n"), strings.NewReader("out2\n"))
	io.Copy(io.Discard, c.tee(src, streamStdout))
	io.Copy(io.Discard, c.tee(strings.NewReader("err1\n"), streamStderr))
	s.remove(a)
	s.remove(b)
	s.remove(a) // twice is harmless
	<-a.writerDone
	<-b.writerDone
	for _, tc := range []struct {
		f    *os.File
		want string
	}{{aOut, "out1\nout2\n"}, {aErr, "err1\n"}, {bOut, "out1\nout2\nerr1\n"}} {
		got, _ := io.ReadAll(tc.f)
		if string(got) != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	if s.n.Load() != 0 {
		t.Errorf("%d clients left", s.n.Load())
	}
}

// A client that does not read is dropped once its queue is full; the
// copier never waits for it.
func TestAttachSlowClientDropped(t *testing.T) {
	c := &container{}
	cl, out, _ := newTestClient(t, &c.attach, false)
	chunk := bytes.Repeat([]byte("x"), 64<<10) // beyond a pipe's buffer
	for range attachQueue + 8 {
		c.attach.publish(false, chunk)
	}
	select {
	case <-cl.gone:
	default:
		t.Fatal("slow client still attached")
	}
	out.Close() // the writer's blocked write fails; it then finishes
	<-cl.writerDone
}
