package streaming

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pod-shim/pod-shim/test/harness"
)

// attachCtr runs a pod and a container with stdin (and tty) as asked,
// running sh -c script.
func (d *daemon) attachCtr(name, script string, stdinOnce, tty bool) string {
	d.T.Helper()
	_, ref := registry(d.T)
	d.Crictl("pull", ref)
	pod, podCfg := d.CrictlRunPod(name)
	file := filepath.Join(d.Base, "ctr-"+name+"-"+harness.RandHex(3)+".json")
	harness.WriteJSON(d.T, file, map[string]any{
		"metadata":   map[string]any{"name": name, "attempt": 0},
		"image":      map[string]string{"image": ref},
		"command":    []string{"sh", "-c", script},
		"log_path":   name + ".log",
		"stdin":      true,
		"stdin_once": stdinOnce,
		"tty":        tty,
		"linux":      map[string]any{},
	})
	return d.CrictlStartContainer(pod, file, podCfg)
}

// attachProc is `crictl attach -i` with pipes for stdin and stdout.
type attachProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	out   bytes.Buffer
	done  chan struct{}
}

func (p *attachProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *attachProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (d *daemon) crictlAttach(t *testing.T, ctr string) *attachProc {
	t.Helper()
	full := []string{"--config", d.CrictlYAML, "--runtime-endpoint", "unix://" + d.Sock, "--timeout", "30s", "attach", "-i", ctr}
	p := &attachProc{done: make(chan struct{})}
	p.cmd = exec.Command(harness.CrictlPath(), full...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	w, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdin = w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// expectLine sends line until out shows want: the attach may still be
// setting up when the first line goes in (and that line is then lost, as
// with any attach that is not there yet), so the test sends again.
func (p *attachProc) expectLine(t *testing.T, line, want string) {
	t.Helper()
	harness.Eventually(t, "attach shows "+want, 30*time.Second, func() error {
		if strings.Contains(p.output(), want) {
			return nil
		}
		io.WriteString(p.stdin, line+"\n")
		select {
		case <-p.done:
			t.Fatalf("crictl attach ended: %q", p.output())
		case <-time.After(300 * time.Millisecond):
		}
		if !strings.Contains(p.output(), want) {
			return fmt.Errorf("output so far %q", p.output())
		}
		return nil
	})
}

// TestAttach: crictl attach shows a running container's output and passes
// stdin; detaching leaves the container's stdin open (no stdin_once), so a
// second attach is answered too.
func TestAttach(t *testing.T) {
	requireHost(t)
	d := startDaemon(t)
	ctr := d.attachCtr("att", `while read l; do echo got:$l; echo err:$l >&2; done; echo stdin-ended; sleep 100000`, false, false)

	a := d.crictlAttach(t, ctr)
	a.expectLine(t, "hello", "got:hello")
	a.expectLine(t, "again", "err:again") // stderr reaches the client too
	a.cmd.Process.Kill()
	<-a.done

	b := d.crictlAttach(t, ctr)
	b.expectLine(t, "second", "got:second")
	b.stdin.Close() // EOF from this client: without stdin_once the container keeps its stdin
	b.cmd.Process.Kill()
	<-b.done
	c := d.crictlAttach(t, ctr)
	c.expectLine(t, "third", "got:third")
	if strings.Contains(d.Crictl("logs", ctr), "stdin-ended") {
		t.Errorf("container saw EOF on stdin without stdin_once:\n%s", d.Crictl("logs", ctr))
	}
	// The log has what the attached clients saw.
	if logs, _ := d.CrictlErr("logs", ctr); !strings.Contains(logs, "got:hello") {
		t.Errorf("log lacks got:hello: %q", logs)
	}
}

// TestAttachStdinOnce: with stdin_once the container's stdin is closed when
// the first attached client's stdin ends; the container then exits and the
// attach session ends with it.
func TestAttachStdinOnce(t *testing.T) {
	requireHost(t)
	d := startDaemon(t)
	ctr := d.attachCtr("once", `while read l; do echo got:$l; done; echo stdin-ended; exit 7`, true, false)

	a := d.crictlAttach(t, ctr)
	a.expectLine(t, "one", "got:one")
	a.stdin.Close()
	select {
	case <-a.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("crictl attach still running after the container's stdin closed: %q", a.output())
	}
	if !strings.Contains(a.output(), "stdin-ended") {
		t.Errorf("attach output %q lacks stdin-ended", a.output())
	}
	var cs containerStatusJSON
	harness.Eventually(t, "container exits", 30*time.Second, func() error {
		d.CrictlJSON(&cs, "inspect", "-o", "json", ctr)
		if cs.Status.State != "CONTAINER_EXITED" {
			return fmt.Errorf("state %s", cs.Status.State)
		}
		return nil
	})
	if cs.Status.ExitCode != 7 {
		t.Errorf("exit code %d, want 7", cs.Status.ExitCode)
	}
}

// TestAttachTTY: crictl attach -it in a pty to a tty container: typing
// reaches the shell, and a window resize reaches the container's terminal.
func TestAttachTTY(t *testing.T) {
	requireHost(t)
	d := startDaemon(t)
	ctr := d.attachCtr("atty", `while read l; do echo got:$l; stty size; done`, false, true)

	c := d.crictlPTY(t, "attach", "-it", ctr)
	if err := c.resize(33, 111); err != nil {
		t.Fatal(err)
	}
	// The resize and the typing travel separate streams: type until the
	// shell reports the new size, each time waiting for its answer ("got:"
	// is the script's, not the tty's echo of the typing, and stty's line,
	// the size or an error while the terminal has none yet, follows it).
	asked := 0
	harness.Eventually(t, "container sees 33 111", 30*time.Second, func() error {
		asked++
		io.WriteString(c.f.(io.Writer), fmt.Sprintf("size-%d\n", asked))
		c.expectRe(t, regexp.MustCompile(fmt.Sprintf(`got:size-%d\r?\n[^\r\n]+\r?\n`, asked)))
		c.mu.Lock()
		defer c.mu.Unlock()
		if s := c.buf.String(); !strings.Contains(s, "33 111") {
			return fmt.Errorf("terminal so far %q", s)
		}
		return nil
	})
}

// TestAttachNoLeaks: attach sessions whose client is killed while output
// flows leave the daemon's fds and goroutines and the monitor's fds where
// they started.
func TestAttachNoLeaks(t *testing.T) {
	requireHost(t)
	d := startDaemonWith(t, func(d *daemon) { d.withDebug(t); d.withMetrics(t) })
	metrics := d.ExtraArgs[len(d.ExtraArgs)-1]
	ctr := d.attachCtr("aleak", `while :; do echo tick; sleep 0.05; done`, false, false)
	mons := d.Monitors()
	if len(mons) != 1 {
		t.Fatalf("monitors %v", mons)
	}
	monFDs := func() int {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", mons[0].Pid))
		return len(fds)
	}
	d.counts(t, metrics)
	base, baseMon := d.counts(t, metrics), monFDs()

	const sessions = 20
	for i := range sessions {
		a := d.crictlAttach(t, ctr)
		harness.Eventually(t, "ticks arrive", 30*time.Second, func() error {
			if !strings.Contains(a.output(), "tick") {
				return fmt.Errorf("output %q", a.output())
			}
			return nil
		})
		if i%2 == 0 {
			a.stdin.Close()
		}
		a.cmd.Process.Kill()
		<-a.done
	}
	harness.Eventually(t, "daemon and monitor back to their starting fds and goroutines", 60*time.Second, func() error {
		if c, m := d.counts(t, metrics), monFDs(); c.fds > base.fds || c.goroutines > base.goroutines || m > baseMon {
			return fmt.Errorf("daemon now %+v, at start %+v; monitor fds %d, at start %d", c, base, m, baseMon)
		}
		return nil
	})
}
