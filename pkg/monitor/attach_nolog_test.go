package monitor

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"
)

// A container created without a log path (critest's attach pod has no log
// directory) can still be attached to: its stdin pipe is kept and its
// output reaches the attached client.
func TestAttachWithoutLog(t *testing.T) {
	p := newPod(t)
	ctx := ctxT(t, 60*time.Second)
	id := newID()
	script := `read l; echo got:$l; echo err:$l >&2; read l2; exit 0`
	if _, err := p.client.Create(ctx, CreateRequest{ID: id, Bundle: p.bundle(id, "sh", "-c", script), Stdin: true, StdinOnce: true, Start: true}); err != nil {
		t.Fatal(err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { inW.Close(); outR.Close(); errR.Close() }()
	es, err := p.client.Attach(ctx, AttachRequest{ContainerID: id, Stdin: true}, AttachStdio{Stdin: inR, Stdout: outW, Stderr: errW})
	if err != nil {
		t.Fatalf("attach to a container without a log: %v", err)
	}
	defer es.Close()
	inR.Close()
	outW.Close()
	errW.Close()
	if _, err := inW.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f    *os.File
		want string
	}{{outR, "got:hello"}, {errR, "err:hello"}} {
		line, err := bufio.NewReader(tc.f).ReadString('\n')
		if strings.TrimSpace(line) != tc.want {
			t.Fatalf("attached output %q, %v; want %q", line, err, tc.want)
		}
	}
	// stdin_once: the client's EOF closes the container's stdin, so the
	// second read ends and the container exits.
	inW.Close()
	if exit, err := p.client.Wait(ctx, id); err != nil || exit.ExitCode != 0 {
		t.Fatalf("exit %+v, %v", exit, err)
	}
	if err := p.client.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
}
