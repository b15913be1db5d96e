package monitor

import (
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"
)

// unclaimedTTL bounds how long an exit nobody has asked for is kept. Such
// exits are container inits that died before their pid file was read (kept
// for the claim that follows within milliseconds) and runc's short-lived
// helpers (never claimed).
const unclaimedTTL = time.Minute

// reaper is the monitor's only caller of wait(2). As a subreaper the monitor
// inherits every container process, so one loop reaps all children and hands
// each exit to whoever registered its pid; os/exec must never wait for itself
// or it would steal exits (and runc's exit codes) from this loop. It is
// installed as go-runc's ProcessMonitor for that reason.
type reaper struct {
	mu        sync.Mutex
	waiters   map[int]func(runc.Exit)
	unclaimed map[int]runc.Exit
	sigs      chan os.Signal
	done      chan struct{}
}

func newReaper() *reaper {
	r := &reaper{
		waiters:   make(map[int]func(runc.Exit)),
		unclaimed: make(map[int]runc.Exit),
		sigs:      make(chan os.Signal, 32),
		done:      make(chan struct{}),
	}
	signal.Notify(r.sigs, syscall.SIGCHLD)
	go r.loop()
	return r
}

// stop ends the loop; children that exit afterwards stay zombies until the
// monitor itself exits, which is when stop is called.
func (r *reaper) stop() {
	signal.Stop(r.sigs)
	close(r.done)
}

func (r *reaper) loop() {
	for {
		select {
		case <-r.sigs:
			r.reapAll()
		case <-r.done:
			return
		}
	}
}

// reapAll reaps every child that has exited. Each wait4 runs under r.mu, so
// that while a holder of r.mu sees a child unreaped, its pid cannot be freed
// and reused (see watchOpen).
func (r *reaper) reapAll() {
	for {
		fn, e, more := r.reapOne()
		if fn != nil {
			fn(e)
		}
		if !more {
			return
		}
	}
}

func (r *reaper) reapOne() (func(runc.Exit), runc.Exit, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ws syscall.WaitStatus
	pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
	for err == syscall.EINTR {
		pid, err = syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
	}
	if err != nil || pid <= 0 {
		return nil, runc.Exit{}, false
	}
	e := runc.Exit{Pid: pid, Status: exitStatus(ws), Timestamp: time.Now()}
	fn, ok := r.waiters[pid]
	if ok {
		delete(r.waiters, pid)
		return fn, e, true
	}
	for pid, old := range r.unclaimed {
		if e.Timestamp.Sub(old.Timestamp) > unclaimedTTL {
			delete(r.unclaimed, pid)
		}
	}
	r.unclaimed[pid] = e
	return nil, e, true
}

// watch calls fn once with pid's exit. since is when the caller began the
// operation that produced pid: an unclaimed exit older than that belongs to an
// earlier process that had the same pid. fn runs on the reaper's goroutine and
// must not block.
func (r *reaper) watch(pid int, since time.Time, fn func(runc.Exit)) {
	r.watchOpen(pid, since, fn, false)
}

// watchOpen is watch that, with open, also returns a pidfd of the child pid
// while it is still unreaped, or -1 once it is gone (or the kernel has no
// pidfds). Under r.mu no wait4 runs, so the pid that is not yet reaped
// cannot have been reused: the pidfd is that child's, and a signal through
// it can never reach a stranger that got the pid later.
func (r *reaper) watchOpen(pid int, since time.Time, fn func(runc.Exit), open bool) int {
	r.mu.Lock()
	if e, ok := r.unclaimed[pid]; ok {
		delete(r.unclaimed, pid)
		if !e.Timestamp.Before(since) {
			r.mu.Unlock()
			fn(e)
			return -1
		}
	}
	fd := -1
	if open {
		// Close-on-exec by default: runc and execs never inherit it.
		if fd, _ = unix.PidfdOpen(pid, 0); fd < 0 {
			fd = -1
		}
	}
	r.waiters[pid] = fn
	r.mu.Unlock()
	return fd
}

// unwatch drops a registration that is no longer wanted.
func (r *reaper) unwatch(pid int) {
	r.mu.Lock()
	delete(r.waiters, pid)
	r.mu.Unlock()
}

// Start implements runc.ProcessMonitor. The lock is held across c.Start so
// that dispatch cannot look the pid up before it is registered.
func (r *reaper) Start(c *exec.Cmd) (chan runc.Exit, error) {
	ec := make(chan runc.Exit, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := c.Start(); err != nil {
		return nil, err
	}
	r.waiters[c.Process.Pid] = func(e runc.Exit) { ec <- e }
	return ec, nil
}

// StartLocked implements runc.ProcessMonitor; pod-shim never sets Pdeathsig
// on runc, so there is no thread to pin.
func (r *reaper) StartLocked(c *exec.Cmd) (chan runc.Exit, error) {
	return r.Start(c)
}

// Wait implements runc.ProcessMonitor. c.Wait still runs, after the exit, to
// finish os/exec's stdio copying and release its resources; its own wait fails
// with ECHILD because the loop already reaped the process, which is expected,
// and leaves the process's pidfd open, hence the Release.
func (r *reaper) Wait(c *exec.Cmd, ec chan runc.Exit) (int, error) {
	e := <-ec
	_ = c.Wait()
	_ = c.Process.Release()
	return e.Status, nil
}

// exitStatus maps a wait status to a shell-style code: 128+signo for signals.
func exitStatus(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
