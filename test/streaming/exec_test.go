package streaming

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/pod-shim/pod-shim/test/harness"
)

// ptyConsole is crictl running in a pty, as a user at a terminal.
type ptyConsole struct {
	cmd  *exec.Cmd
	f    interface{ Write([]byte) (int, error) }
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan struct{}

	resize func(rows, cols uint16) error
}

func (d *daemon) crictlPTY(t *testing.T, args ...string) *ptyConsole {
	t.Helper()
	full := append([]string{"--config", d.CrictlYAML, "--runtime-endpoint", "unix://" + d.Sock, "--timeout", "30s"}, args...)
	cmd := exec.Command(harness.CrictlPath(), full...)
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	c := &ptyConsole{cmd: cmd, f: f, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		b := make([]byte, 4096)
		for {
			n, err := f.Read(b)
			c.mu.Lock()
			c.buf.Write(b[:n])
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		f.Close()
	})
	c.resize = func(rows, cols uint16) error { return pty.Setsize(f, &pty.Winsize{Rows: rows, Cols: cols}) }
	return c
}

// expectRe waits until the terminal's output so far matches re.
func (c *ptyConsole) expectRe(t *testing.T, re *regexp.Regexp) {
	t.Helper()
	harness.Eventually(t, "terminal matches "+re.String(), 30*time.Second, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !re.Match(c.buf.Bytes()) {
			return fmt.Errorf("terminal so far: %q", c.buf.String())
		}
		return nil
	})
}

func (c *ptyConsole) expect(t *testing.T, what string) {
	t.Helper()
	harness.Eventually(t, "terminal shows "+what, 30*time.Second, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !strings.Contains(c.buf.String(), what) {
			return fmt.Errorf("terminal so far: %q", c.buf.String())
		}
		return nil
	})
}

// TestExecTTYFirstSize: the exec's terminal has the client's size from the
// process's first instruction, not only after a resize that races it (a
// first `stty size` once printed "0 0" under kubectl exec -it).
func TestExecTTYFirstSize(t *testing.T) {
	requireHost(t)
	d := startDaemon(t)
	_, ctr := d.podWith("ttysize", "sleep 100000")
	for i := range 5 {
		c := d.crictlPTY(t, "exec", "-it", ctr, "stty", "size")
		select {
		case <-c.done:
		case <-time.After(30 * time.Second):
			t.Fatal("crictl exec -it stty size did not end")
		}
		c.cmd.Wait()
		c.mu.Lock()
		got := strings.TrimSpace(c.buf.String())
		c.mu.Unlock()
		if got != "24 80" {
			t.Fatalf("exec %d: stty size as the first instruction = %q, want \"24 80\"", i, got)
		}
	}
}

// TestExecTTY: crictl exec -it in a pty runs commands and sees the window
// size change; exit status of the shell comes back.
func TestExecTTY(t *testing.T) {
	requireHost(t)
	d := startDaemon(t)
	_, ctr := d.podWith("tty", "sleep 100000")

	c := d.crictlPTY(t, "exec", "-it", ctr, "sh")
	io.WriteString(c.f.(io.Writer), "echo tty-$((40+2)); stty size\n")
	c.expect(t, "tty-42")
	c.expect(t, "24 80")
	if err := c.resize(33, 111); err != nil {
		t.Fatal(err)
	}
	// crictl forwards SIGWINCH as a resize, beside the typing: ask the
	// shell until it reports the new size, each time waiting for its
	// answer (computed, so the tty's echo of the typing cannot match).
	asked := 0
	harness.Eventually(t, "window size change seen in the container", 30*time.Second, func() error {
		asked++
		io.WriteString(c.f.(io.Writer), fmt.Sprintf("stty size; echo answered-$((%d+1000))\n", asked))
		c.expect(t, fmt.Sprintf("answered-%d", asked+1000))
		c.mu.Lock()
		defer c.mu.Unlock()
		if !strings.Contains(c.buf.String(), "33 111") {
			return errors.New("no 33 111 yet")
		}
		return nil
	})
	io.WriteString(c.f.(io.Writer), "tty; exit 3\n")
	c.expect(t, "/dev/pts/")
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatal("crictl exec -it did not end after the shell exited")
	}
	err := c.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Errorf("crictl exec -it of a shell exiting 3: %v", err)
	}
}

// TestExecExitCode: non-tty crictl exec passes output, stdin and the exit code.
func TestExecExitCode(t *testing.T) {
	requireHost(t)
	d := startDaemon(t)
	_, ctr := d.podWith("nontty", "sleep 100000")

	out := d.Crictl("exec", ctr, "sh", "-c", "echo out-ok; echo err-ok >&2")
	if !strings.Contains(out, "out-ok") {
		t.Errorf("exec stdout %q", out)
	}
	_, err := d.CrictlErr("exec", ctr, "sh", "-c", "exit 7")
	// crictl 1.37 exits 1 and names the command's code in its error text.
	if err == nil || !strings.Contains(err.Error(), "exit code 7") {
		t.Errorf("crictl exec of exit 7: %v", err)
	}
	// stdin reaches the process and its EOF ends it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.CrictlPath(), "--config", d.CrictlYAML, "--runtime-endpoint", "unix://"+d.Sock, "exec", "-i", ctr, "sh", "-c", "tr a-z A-Z")
	cmd.Stdin = strings.NewReader("piped through\n")
	got, err := cmd.Output()
	if err != nil || !strings.Contains(string(got), "PIPED THROUGH") {
		t.Errorf("exec -i: %q, %v", got, err)
	}
}
