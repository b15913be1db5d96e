package monitor

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestTerminalContainer(t *testing.T) {
	p := newPod(t)
	ctx := ctxT(t, 30*time.Second)
	id := newID()
	logPath := filepath.Join(t.TempDir(), "c.log")
	tty := withTerminal
	bundle := p.bundleWith(id, tty, "sh", "-c", "tty; test -t 0 && echo stdin-is-tty; stty size; echo hi")
	if _, err := p.client.Create(ctx, CreateRequest{ID: id, Bundle: bundle, LogPath: logPath, Terminal: true, Stdin: true}); err != nil {
		t.Fatal(err)
	}
	// Created, not started: the master is there for attach and resize.
	if err := p.client.Resize(ctx, id, 123, 45); err != nil {
		t.Fatalf("resize: %v", err)
	}
	if err := p.client.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	exit, err := p.client.Wait(ctx, id)
	if err != nil || exit.ExitCode != 0 {
		t.Fatalf("exit %+v, %v", exit, err)
	}
	recs := readLog(t, logPath)
	got := lines(recs, "stdout")
	if len(lines(recs, "stderr")) != 0 {
		t.Errorf("a tty has one stream; got stderr records %q", lines(recs, "stderr"))
	}
	want := []string{"/dev/pts/0", "stdin-is-tty", "45 123", "hi"}
	if !equal(got, want) {
		t.Fatalf("stdout lines = %q, want %q", got, want)
	}
	if err := p.client.Resize(ctx, id, 80, 24); !errors.Is(err, ErrNotRunning) {
		t.Errorf("resize after exit: %v, want ErrNotRunning", err)
	}
	if err := p.client.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
}

func TestTerminalWithoutLogIsDrained(t *testing.T) {
	p := newPod(t)
	ctx := ctxT(t, 60*time.Second)
	id := newID()
	// 1 MiB through a pty nobody attached to: the monitor must keep reading
	// or the container blocks on a full pty and never exits.
	tty := withTerminal
	bundle := p.bundleWith(id, tty, "sh", "-c", "head -c 1048576 /dev/zero | od")
	if _, err := p.client.Create(ctx, CreateRequest{ID: id, Bundle: bundle, Terminal: true, Start: true}); err != nil {
		t.Fatal(err)
	}
	if exit, err := p.client.Wait(ctx, id); err != nil || exit.ExitCode != 0 {
		t.Fatalf("exit %+v, %v", exit, err)
	}
	if err := p.client.Resize(ctx, newID(), 1, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("resize of an unknown container: %v, want ErrNotFound", err)
	}
	plain := newID()
	p.run(plain, "", false, "true")
	if err := p.client.Resize(ctx, plain, 1, 1); err == nil || !strings.Contains(err.Error(), "no tty") {
		t.Errorf("resize of a container without a tty: %v", err)
	}
}

func TestCRLFReader(t *testing.T) {
	for _, in := range []string{"", "a\r\nb\r\n", "a\rb\r\n\r\r\n", "x\r", "\r\n\r\n", strings.Repeat("ab\r\n", 1000) + "\r"} {
		want := strings.ReplaceAll(in, "\r\n", "\n")
		for name, r := range map[string]io.Reader{
			"whole":   strings.NewReader(in),
			"onebyte": iotest.OneByteReader(strings.NewReader(in)),
			"half":    iotest.HalfReader(strings.NewReader(in)),
		} {
			var out bytes.Buffer
			buf := make([]byte, 7)
			cr := &crlfReader{r: r}
			for {
				n, err := cr.Read(buf)
				out.Write(buf[:n])
				if err != nil {
					break
				}
			}
			if out.String() != want {
				t.Errorf("%s %q → %q, want %q", name, in, out.String(), want)
			}
		}
	}
}

// withTerminal gives the test bundle a terminal and the devpts it needs.
func withTerminal(s *specs.Spec) {
	s.Process.Terminal = true
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/dev/pts", Type: "devpts", Source: "devpts",
		Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}})
}
