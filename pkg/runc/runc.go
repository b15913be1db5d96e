// Package runc drives one OCI runtime binary (runc) with one state root.
//
// It is a thin layer over go-runc that gives the rest of pod-shim plain types,
// typed "not found" errors and bounded timeouts. The pod monitor uses it for the
// container lifecycle; the daemon uses List, State, Kill and Delete to clean up
// after a monitor that is gone.
package runc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	gorunc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ErrNotFound is wrapped by errors about a container the runtime does not know.
var ErrNotFound = errors.New("container not found")

// ErrNotRunning is wrapped by Kill errors when the container has no live process.
var ErrNotRunning = errors.New("container not running")

// shortTimeout bounds the calls that only touch runc's state dir and signal
// processes; a runc that hangs there is broken and must not hang the caller.
const shortTimeout = 30 * time.Second

// Runtime is one runtime binary with one --root. It holds no per-container
// state, so one value may be shared by any number of goroutines.
type Runtime struct {
	binary        string
	root          string
	systemdCgroup bool
}

// New returns a Runtime for binary (e.g. /usr/sbin/runc) keeping its state in root.
func New(binary, root string) *Runtime {
	return &Runtime{binary: binary, root: root}
}

// FromHandler returns the Runtime of a RuntimeClass handler: its binary,
// its root and the options runc's CLI has flags for ("systemd_cgroup").
func FromHandler(h Handler) *Runtime {
	rt := New(h.Binary, h.Root)
	rt.systemdCgroup = h.SystemdCgroup()
	return rt
}

// SystemdCgroup says whether the runtime is run with --systemd-cgroup.
func (rt *Runtime) SystemdCgroup() bool { return rt.systemdCgroup }

// WithSystemdCgroup returns a copy of rt that passes --systemd-cgroup.
func (rt *Runtime) WithSystemdCgroup(on bool) *Runtime {
	c := *rt
	c.systemdCgroup = on
	return &c
}

// Binary is the runtime executable's path.
func (rt *Runtime) Binary() string { return rt.binary }

// Root is the runtime's state directory (runc --root).
func (rt *Runtime) Root() string { return rt.root }

// IO is the stdio handed to the container (or exec) process. Nil files become
// /dev/null. The caller keeps ownership of its files; they are not closed here.
type IO struct {
	Stdin  *os.File
	Stdout *os.File
	Stderr *os.File
}

// CreateOptions tunes Create and Run.
type CreateOptions struct {
	// PidFile receives the container init's pid, in the host's pid namespace.
	PidFile string
	// LogFile receives runc's own log (JSON); its last error is put into the
	// returned error, since runc's stderr is the container's stderr.
	LogFile string
	IO      IO
	// AfterStart runs as soon as the runc process has started, before it
	// exits: the caller closes its copies of the child's pipe ends there.
	AfterStart func()
	// ConsoleSocket, for a container whose process has a terminal: runc
	// sends the pty master there (gorunc.NewTempConsoleSocket) and gives the
	// container the slave as its stdio; IO is then only runc's own.
	ConsoleSocket gorunc.ConsoleSocket
}

// Create runs `runc create`: the container exists and waits to be started.
func (rt *Runtime) Create(ctx context.Context, id, bundle string, opts CreateOptions) error {
	r := rt.runc(opts.LogFile)
	err := r.Create(ctx, id, bundle, &gorunc.CreateOpts{
		IO:            &stdio{io: opts.IO, afterStart: opts.AfterStart},
		PidFile:       opts.PidFile,
		ConsoleSocket: opts.ConsoleSocket,
	})
	if err != nil {
		return fmt.Errorf("runc create %s: %w", id, withLog(err, opts.LogFile))
	}
	return nil
}

// Run runs `runc run --detach`: create and start in one process spawn, which is
// what the pod start path wants for the pause container.
func (rt *Runtime) Run(ctx context.Context, id, bundle string, opts CreateOptions) error {
	r := rt.runc(opts.LogFile)
	// go-runc's Run closes Started after the command ends; it is only a
	// hook for AfterStart here.
	started := make(chan int, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, ok := <-started; ok && opts.AfterStart != nil {
			opts.AfterStart()
		}
	}()
	_, err := r.Run(ctx, id, bundle, &gorunc.CreateOpts{
		IO:            &stdio{io: opts.IO},
		PidFile:       opts.PidFile,
		Detach:        true,
		Started:       started,
		ConsoleSocket: opts.ConsoleSocket,
	})
	<-done
	if err != nil {
		return fmt.Errorf("runc run %s: %w", id, withLog(err, opts.LogFile))
	}
	return nil
}

// Start runs `runc start` on a created container.
func (rt *Runtime) Start(ctx context.Context, id string) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	if err := rt.runc("").Start(ctx, id); err != nil {
		return fmt.Errorf("runc start %s: %w", id, classify(err))
	}
	return nil
}

// Kill sends sig to the container's init, or to all its processes with all.
// It wraps ErrNotFound or ErrNotRunning when there is nothing to signal.
func (rt *Runtime) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	if err := rt.runc("").Kill(ctx, id, int(sig), &gorunc.KillOpts{All: all}); err != nil {
		return fmt.Errorf("runc kill %s %d: %w", id, sig, classify(err))
	}
	return nil
}

// Delete runs `runc delete`; force kills a live container first. Without
// force a container that is already gone yields an error wrapping
// ErrNotFound; with force runc treats it as success.
func (rt *Runtime) Delete(ctx context.Context, id string, force bool) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	if err := rt.runc("").Delete(ctx, id, &gorunc.DeleteOpts{Force: force}); err != nil {
		return fmt.Errorf("runc delete %s: %w", id, classify(err))
	}
	return nil
}

// ExecOptions tunes Exec.
type ExecOptions struct {
	// PidFile receives the exec'd process's pid once it runs; its absence
	// after a failure means runc never started the process.
	PidFile string
	LogFile string
	IO      IO
	// AfterStart runs once runc has started; see CreateOptions.AfterStart.
	AfterStart func()
}

// Exec runs process in the container and waits for it. A process that exits
// non-zero yields an error for which ExitStatus reports the code.
func (rt *Runtime) Exec(ctx context.Context, id string, process specs.Process, opts ExecOptions) error {
	err := rt.runc("").Exec(ctx, id, process, &gorunc.ExecOpts{
		IO:      &stdio{io: opts.IO, afterStart: opts.AfterStart},
		PidFile: opts.PidFile,
		LogFile: opts.LogFile,
	})
	if err != nil {
		return fmt.Errorf("runc exec %s: %w", id, err)
	}
	return nil
}

// ExitStatus reports the exit status carried by an error from Exec, Create or
// Run when runc (or the exec'd process) exited non-zero.
func ExitStatus(err error) (int, bool) {
	var ee *gorunc.ExitError
	if errors.As(err, &ee) {
		return ee.Status, true
	}
	return 0, false
}

// State is what runc reports about one container.
type State struct {
	ID      string
	Pid     int
	Status  string // created, running, paused, stopped
	Bundle  string
	Created time.Time
}

// State returns the container's runc state; it wraps ErrNotFound when unknown.
func (rt *Runtime) State(ctx context.Context, id string) (*State, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	c, err := rt.runc("").State(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("runc state %s: %w", id, classify(err))
	}
	s := toState(c)
	return &s, nil
}

// List returns every container under the runtime's root.
func (rt *Runtime) List(ctx context.Context) ([]State, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	cs, err := rt.runc("").List(ctx)
	if err != nil {
		return nil, fmt.Errorf("runc list: %w", err)
	}
	out := make([]State, 0, len(cs))
	for _, c := range cs {
		out = append(out, toState(c))
	}
	return out, nil
}

func toState(c *gorunc.Container) State {
	return State{ID: c.ID, Pid: c.Pid, Status: c.Status, Bundle: c.Bundle, Created: c.Created}
}

func (rt *Runtime) runc(logFile string) *gorunc.Runc {
	r := &gorunc.Runc{Command: rt.binary, Root: rt.root, SystemdCgroup: rt.systemdCgroup}
	if logFile != "" {
		r.Log = logFile
		r.LogFormat = gorunc.JSON
	}
	return r
}

func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, shortTimeout)
}

// classify turns runc's messages into typed errors. runc has no error codes,
// only text; these strings have been stable across runc 1.0–1.2.
func classify(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "does not exist"), strings.Contains(msg, "not found"):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case strings.Contains(msg, "not running"), strings.Contains(msg, "process already finished"),
		strings.Contains(msg, "container is stopped"):
		return fmt.Errorf("%w: %w", ErrNotRunning, err)
	}
	return err
}

// withLog appends runc's last logged error, since the plain error is only
// "exit status 1" when stdio belongs to the container.
func withLog(err error, logFile string) error {
	if logFile == "" {
		return classify(err)
	}
	if msg := LastLogError(logFile); msg != "" {
		return classify(fmt.Errorf("%w: %s", err, msg))
	}
	return classify(err)
}

// LastLogError returns the message of the last error-level record in a runc
// JSON log file, or "" when there is none.
func LastLogError(logFile string) string {
	data, err := os.ReadFile(logFile)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := lines[i]
		if !strings.Contains(l, `"level":"error"`) && !strings.Contains(l, `"level":"fatal"`) {
			continue
		}
		if _, rest, ok := strings.Cut(l, `"msg":"`); ok {
			if msg, _, ok := strings.Cut(rest, `","`); ok {
				return strings.ReplaceAll(msg, `\"`, `"`)
			}
			return strings.TrimSuffix(rest, `"}`)
		}
		return l
	}
	return ""
}

// stdio adapts IO to go-runc's IO interface. go-runc only needs Set (and
// CloseAfterStart); the pipe accessors are for its own pipe helpers.
type stdio struct {
	io         IO
	afterStart func()
}

func (s *stdio) Close() error { return nil }

func (s *stdio) Stdin() io.WriteCloser { return nil }
func (s *stdio) Stdout() io.ReadCloser { return nil }
func (s *stdio) Stderr() io.ReadCloser { return nil }

func (s *stdio) Set(cmd *exec.Cmd) {
	if s.io.Stdin != nil {
		cmd.Stdin = s.io.Stdin
	}
	if s.io.Stdout != nil {
		cmd.Stdout = s.io.Stdout
	}
	if s.io.Stderr != nil {
		cmd.Stderr = s.io.Stderr
	}
}

func (s *stdio) CloseAfterStart() error {
	if s.afterStart != nil {
		s.afterStart()
	}
	return nil
}

// Update applies new cgroup limits to a running or created container
// (`runc update --resources -`), so they take effect at once and runc's own
// record of the container agrees with them.
func (rt *Runtime) Update(ctx context.Context, id string, r *specs.LinuxResources) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	if err := rt.runc("").Update(ctx, id, r); err != nil {
		return fmt.Errorf("runc update %s: %w", id, classify(err))
	}
	return nil
}
