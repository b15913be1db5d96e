package monitor

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pod-shim/pod-shim/pkg/pipedrain"
	"github.com/pod-shim/pod-shim/pkg/runc"
)

// execKillGrace is how long runc exec gets to notice its process was killed
// before runc itself is killed.
const execKillGrace = 5 * time.Second

// execSeq names an exec's pid and log files; the run dir is the monitor's own.
var execSeq atomic.Uint64

func (m *monitor) exec(ctx context.Context, req ExecRequest) (*ExecResult, error) {
	c := m.lookup(req.ContainerID)
	if c == nil {
		return nil, fmt.Errorf("exec in %s: %w", req.ContainerID, ErrNotFound)
	}
	if c.exitRecord() != nil {
		return nil, fmt.Errorf("exec in %s: %w", req.ContainerID, ErrNotRunning)
	}
	if len(req.Process.Args) == 0 {
		return nil, fmt.Errorf("exec in %s: no command", req.ContainerID)
	}
	name := "exec-" + strconv.FormatUint(execSeq.Add(1), 10)
	pidFile := m.runPath(name + ".pid")
	logFile := m.runPath(name + ".log")
	defer os.Remove(pidFile)
	defer os.Remove(logFile)

	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	var closeOnce sync.Once
	closeChild := func() { closeOnce.Do(func() { outW.Close(); errW.Close() }) }
	var stdout, stderr cappedBuffer
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); stdout.readFrom(outR) }()
	go func() { defer readers.Done(); stderr.readFrom(errR) }()

	// runc runs under its own context: on timeout or cancel the exec'd
	// process must be killed first, and killing runc alone would orphan it.
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	done := make(chan error, 1)
	go func() {
		done <- m.rt.Exec(runCtx, req.ContainerID, req.Process, runc.ExecOptions{
			PidFile:    pidFile,
			LogFile:    logFile,
			IO:         runc.IO{Stdout: outW, Stderr: errW},
			AfterStart: closeChild,
		})
	}()
	var timeout <-chan time.Time
	if req.Timeout > 0 {
		t := time.NewTimer(req.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	timedOut := false
	select {
	case err = <-done:
	case <-timeout:
		timedOut = true
		err = m.killExec(pidFile, done, cancelRun)
	case <-ctx.Done():
		m.killExec(pidFile, done, cancelRun)
		err = ctx.Err()
	}
	closeChild()
	// The exec'd process may have left children holding the pipes.
	pipedrain.Wait(&readers, drainTimeout, outR, errR)
	outR.Close()
	errR.Close()

	if timedOut {
		return nil, fmt.Errorf("exec in %s after %s: %w", req.ContainerID, req.Timeout, ErrExecTimeout)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res := &ExecResult{Stdout: stdout.buf, Stderr: stderr.buf}
	if err == nil {
		return res, nil
	}
	// runc's status is the process's only if runc got as far as starting it;
	// before that, the status is runc's own failure.
	if status, ok := runc.ExitStatus(err); ok && fileExists(pidFile) {
		res.ExitCode = status
		return res, nil
	}
	if msg := runc.LastLogError(logFile); msg != "" {
		err = fmt.Errorf("%w: %s", err, msg)
	}
	// runc refuses to exec once the init has exited, which it may just
	// have done with the exit not recorded yet: that is "not running", as
	// for the next exec, not a failure of runc's.
	if c.initExited() {
		err = fmt.Errorf("%w: %w", ErrNotRunning, err)
	}
	return nil, fmt.Errorf("exec in %s: %w", req.ContainerID, err)
}

// killExec SIGKILLs the exec'd process (its pid from runc's pid file) and
// waits for runc to report it; runc is killed if it does not.
func (m *monitor) killExec(pidFile string, done <-chan error, cancelRun context.CancelFunc) error {
	deadline := time.Now().Add(execKillGrace)
	for {
		// runc writes the pid file once the process runs; a timeout that
		// hits while runc is still setting up must wait for it.
		if pid, err := readPidFile(pidFile); err == nil {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
				m.log.Warn("kill exec process", "pid", pid, "err", err)
			}
			break
		}
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			break
		}
	}
	select {
	case err := <-done:
		return err
	case <-time.After(time.Until(deadline)):
	}
	cancelRun()
	return <-done
}

// cappedBuffer keeps the first MaxExecOutput bytes read and drops the rest,
// still reading so the writer never blocks on a full pipe.
type cappedBuffer struct {
	buf []byte
}

func (b *cappedBuffer) readFrom(r io.Reader) {
	chunk := make([]byte, 8192)
	for {
		n, err := r.Read(chunk)
		if room := MaxExecOutput - len(b.buf); room > 0 {
			b.buf = append(b.buf, chunk[:min(n, room)]...)
		}
		if err != nil {
			return
		}
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
