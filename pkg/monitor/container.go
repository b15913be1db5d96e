package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gorunc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"

	"github.com/pod-shim/pod-shim/pkg/runc"
)

// container is the monitor's bookkeeping for one container.
type container struct {
	id string

	// Set once Create succeeded; read-only afterwards.
	pid       int
	lw        *logWriter // nil when output is discarded
	stdin     *os.File   // our end of the stdin pipe, kept for attach; nil without Stdin
	stdinOnce bool       // attach closes stdin when its first client detaches
	outputs   []*os.File // read ends of stdout/stderr (or the pty master), owned by the copiers
	// console is the pty master of a tty container (nil otherwise), also
	// in outputs: the copier reads it; attach writes to it and resizes it
	// through Console. Closed by drain once the container has exited.
	console *os.File
	copiers sync.WaitGroup
	attach  attachSet // attached clients, fed by the copiers (attach.go)
	oom     oomCounter
	oomBase int64

	mu      sync.Mutex
	created bool          // false while Create is still running
	exit    *Exit         // set before exited is closed
	exited  chan struct{} // closed once the exit is recorded and the log drained
	// pidfd refers to the init while it runs (-1 before Create is done,
	// once it has exited, or without kernel support): signals go through
	// it without a runc spawn. ownPidNS says the init is the first process
	// of a pid namespace of its own, so the container dies whole with it.
	pidfd    int
	ownPidNS bool
	// runcGone is closed once finish has deleted runc's state of the
	// exited container (runcErr says whether that worked), or once a
	// failed Create cleaned up.
	runcGone chan struct{}
	runcErr  error
}

func (c *container) exitRecord() *Exit {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exit
}

// initExited says whether the container's init has exited, recorded yet or
// not: its pidfd turns readable at the exit, before the reaper records it.
// Without a pidfd (no kernel support) only a recorded exit counts.
func (c *container) initExited() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exit != nil {
		return true
	}
	if c.pidfd < 0 {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(c.pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}

func (m *monitor) create(ctx context.Context, req CreateRequest) (pid int, err error) {
	if err := validID(req.ID); err != nil {
		return 0, err
	}
	if req.Bundle == "" {
		return 0, errors.New("bundle is required")
	}
	c := &container{id: req.ID, exited: make(chan struct{}), runcGone: make(chan struct{}), oomBase: -1, stdinOnce: req.StdinOnce, pidfd: -1}
	m.mu.Lock()
	if _, ok := m.containers[req.ID]; ok {
		m.mu.Unlock()
		return 0, fmt.Errorf("container %s already exists", req.ID)
	}
	// Reserve the id so concurrent creates of one id cannot both run runc.
	m.containers[req.ID] = c
	m.mu.Unlock()
	log := m.log.With("container", req.ID)

	var childEnds []*os.File // the container's ends, closed once runc has them
	defer func() {
		closeAll(childEnds)
		if err != nil {
			m.abortCreate(c)
		}
	}()
	childIO, ends, err := m.setupIO(c, req)
	childEnds = ends
	if err != nil {
		return 0, err
	}
	var once sync.Once
	afterStart := func() { once.Do(func() { closeAll(childEnds); childEnds = nil }) }

	pidFile := m.runPath(req.ID + ".pid")
	runcLog := m.runPath(req.ID + ".runc.log")
	os.Remove(pidFile)
	os.Remove(runcLog)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, createTimeout)
		defer cancel()
	}
	opts := runc.CreateOptions{PidFile: pidFile, LogFile: runcLog, IO: childIO, AfterStart: afterStart}
	var masterc <-chan ptyMaster
	if req.Terminal {
		sock, err := gorunc.NewTempConsoleSocket()
		if err != nil {
			return 0, fmt.Errorf("console socket: %w", err)
		}
		defer sock.Close()
		opts.ConsoleSocket = sock
		masterc = receiveMaster(sock)
	}
	since := time.Now()
	if req.Start {
		err = m.rt.Run(ctx, req.ID, req.Bundle, opts)
	} else {
		err = m.rt.Create(ctx, req.ID, req.Bundle, opts)
	}
	if masterc != nil {
		if err != nil {
			// runc sends no master when it fails: closing the socket
			// ends the receive (defer above), after which it is drained.
			go func() {
				if g := <-masterc; g.file != nil {
					g.file.Close()
				}
			}()
			return 0, err
		}
		g := <-masterc
		if g.err != nil {
			return 0, fmt.Errorf("receive the pty master: %w", g.err)
		}
		m.copyConsole(c, g.file)
	}
	if err != nil {
		return 0, err
	}
	pid, err = readPidFile(pidFile)
	if err != nil {
		return 0, err
	}
	c.pid = pid
	if c.oom = oomCounterForCgroup(req.Cgroup); req.Cgroup != "" && c.oom.file != "" {
		c.oomBase = 0
	} else {
		c.oom = oomCounterFor(pid)
		c.oomBase = c.oom.count()
	}
	// Read before the pidfd is opened: if that finds the init unreaped,
	// pid was the init's all along, so this read was of the init too.
	ownPidNS := isPidNSInit(pid)
	// finish, on a goroutine of its own, takes c.mu before it closes the
	// pidfd: an exit reaped at once cannot overtake the store of it.
	c.mu.Lock()
	c.created = true
	c.ownPidNS = ownPidNS
	c.pidfd = m.reaper.watchOpen(pid, since, func(e gorunc.Exit) { go m.finish(c, e) }, true)
	c.mu.Unlock()
	log.Info("container created", "pid", pid, "started", req.Start, "took", time.Since(since))
	return pid, nil
}

// setupIO opens the log and the pipes. It returns the container's side (to
// hand to runc) and the files to close once runc holds them.
func (m *monitor) setupIO(c *container, req CreateRequest) (runc.IO, []*os.File, error) {
	var io runc.IO
	var ends []*os.File
	if req.Terminal {
		// The container's stdio is the pty slave; runc's own stdio (its
		// errors go to the runc log anyway) is /dev/null.
		if req.LogPath != "" {
			lw, err := openLog(req.LogPath)
			if err != nil {
				return io, ends, err
			}
			c.lw = lw
		}
		return io, ends, nil
	}
	if req.ID == m.id && req.LogPath == "" && !req.Stdin {
		// The pod's own id is its pause container: nobody attaches to it
		// and it has no CRI log, so what it prints (only why it failed)
		// goes straight to the monitor's log, sparing two pipes, their
		// copier goroutines and buffers in every pod.
		io.Stdout, io.Stderr = os.Stderr, os.Stderr
		return io, ends, nil
	}
	if req.Stdin {
		r, w, err := os.Pipe()
		if err != nil {
			return io, ends, err
		}
		io.Stdin, c.stdin = r, w
		ends = append(ends, r)
	}
	// Without a log the output still goes through pipes the monitor reads:
	// attach must see it (critest attaches to a pod without a log
	// directory), and what nobody is attached to is discarded.
	var lw *logWriter
	if req.LogPath != "" {
		var err error
		if lw, err = openLog(req.LogPath); err != nil {
			return io, ends, err
		}
		c.lw = lw
	}
	for _, stream := range []string{streamStdout, streamStderr} {
		r, w, err := os.Pipe()
		if err != nil {
			return io, ends, err
		}
		ends = append(ends, w)
		c.outputs = append(c.outputs, r)
		if stream == streamStdout {
			io.Stdout = w
		} else {
			io.Stderr = w
		}
		c.copiers.Add(1)
		go func() {
			defer c.copiers.Done()
			if lw == nil {
				drain(c.tee(r, stream))
				return
			}
			copyStream(c.tee(r, stream), stream, lw, m.maxLine, func(err error) {
				m.log.Warn("container log write failed", "container", c.id, "err", err)
			})
		}()
	}
	return io, ends, nil
}

// drain reads r to its end for the attach taps in it, keeping nothing.
func drain(r io.Reader) { io.Copy(io.Discard, r) }

// ptyMaster is what receiveMaster delivers: the pty master, non-blocking so
// drain can cut its read short with a deadline, or why there is none.
type ptyMaster struct {
	file *os.File
	err  error
}

// receiveMaster waits, in the background, for runc to send the pty master
// to sock. Closing sock ends the wait with an error.
func receiveMaster(sock *gorunc.Socket) <-chan ptyMaster {
	ch := make(chan ptyMaster, 1)
	go func() {
		cons, err := sock.ReceiveMaster()
		if err != nil {
			ch <- ptyMaster{err: err}
			return
		}
		// A fd of our own, registered with the poller: the console's
		// file is in blocking mode (Fd() made it so).
		fd, err := unix.Dup(int(cons.Fd()))
		cons.Close()
		if err != nil {
			ch <- ptyMaster{err: err}
			return
		}
		unix.CloseOnExec(fd)
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			ch <- ptyMaster{err: err}
			return
		}
		ch <- ptyMaster{file: os.NewFile(uintptr(fd), "pty-master")}
	}()
	return ch
}

// copyConsole keeps a tty container's pty master and copies what the
// container writes to it into the log as stdout (a tty has one stream). It
// is read even without a log: a full pty would block the container.
func (m *monitor) copyConsole(c *container, master *os.File) {
	c.console = master
	c.outputs = append(c.outputs, master)
	c.copiers.Add(1)
	go func() {
		defer c.copiers.Done()
		out := c.tee(master, streamStdout) // attach gets the raw "\r\n"
		if c.lw == nil {
			io.Copy(io.Discard, out)
			return
		}
		// The tty's line discipline turns "\n" into "\r\n"; containerd's
		// log reader drops the "\r" too (bufio.ReadLine).
		copyStream(&crlfReader{r: out}, streamStdout, c.lw, m.maxLine, func(err error) {
			m.log.Warn("container log write failed", "container", c.id, "err", err)
		})
	}()
}

// Console returns the pty master of tty container id, for attach: write the
// client's stdin to it, resize it with ResizeConsole. The monitor's copier
// is its only reader (output reaches the log, and any attach tap, there);
// the caller must not read from it nor close it. It wraps ErrNotFound for an
// unknown container and ErrNotRunning once the container has exited (the
// master is closed then).
func (m *monitor) Console(id string) (*os.File, error) {
	c := m.lookup(id)
	if c == nil {
		return nil, fmt.Errorf("console of %s: %w", id, ErrNotFound)
	}
	if c.exitRecord() != nil {
		return nil, fmt.Errorf("console of %s: %w", id, ErrNotRunning)
	}
	c.mu.Lock()
	created := c.created
	c.mu.Unlock()
	if !created || c.console == nil {
		return nil, fmt.Errorf("console of %s: the container has no tty", id)
	}
	return c.console, nil
}

// resize sets the window size of tty container id's terminal.
func (m *monitor) resize(id string, width, height uint16) error {
	f, err := m.Console(id)
	if err != nil {
		return err
	}
	return ResizeConsole(f, width, height)
}

// ResizeConsole sets a pty master's window size without putting the file in
// blocking mode (as Fd() would).
func ResizeConsole(master *os.File, width, height uint16) error {
	rc, err := master.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	err = rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Col: width, Row: height})
	})
	if err == nil {
		err = ierr
	}
	if err != nil {
		return fmt.Errorf("resize console: %w", err)
	}
	return nil
}

// crlfReader drops a "\r" that comes right before a "\n".
type crlfReader struct {
	r       io.Reader
	pending bool // a "\r" ended the previous read; it is not yet passed on
}

func (c *crlfReader) Read(p []byte) (int, error) {
	if len(p) < 2 {
		return c.r.Read(p)
	}
	off := 0
	if c.pending {
		p[0] = '\r'
		off = 1
	}
	n, err := c.r.Read(p[off:])
	n += off
	c.pending = false
	out := 0
	for i := 0; i < n; i++ {
		if p[i] == '\r' {
			if i+1 < n && p[i+1] == '\n' {
				continue
			}
			if i+1 == n && err == nil {
				c.pending = true
				continue
			}
		}
		p[out] = p[i]
		out++
	}
	return out, err
}

// abortCreate undoes a failed create: whatever runc left is deleted and the
// copiers, which saw runc's own error output, are drained.
func (m *monitor) abortCreate(c *container) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.rt.Delete(ctx, c.id, true); err != nil && !errors.Is(err, runc.ErrNotFound) {
		m.log.Warn("cleanup after failed create", "container", c.id, "err", err)
	}
	m.drain(c)
	if c.stdin != nil {
		c.stdin.Close()
	}
	os.Remove(m.runPath(c.id + ".pid"))
	m.mu.Lock()
	delete(m.containers, c.id)
	m.mu.Unlock()
	// Release any Wait that looked the container up while it was being
	// created; with no exit recorded it reports the container as not found.
	close(c.exited)
	close(c.runcGone)
}

// drain waits for the copiers to reach EOF, then closes the log. A process
// that escaped the container (or its pid namespace is shared) can keep the
// pipe open forever, so after drainTimeout the reads are cut short.
func (m *monitor) drain(c *container) {
	done := make(chan struct{})
	go func() {
		c.copiers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(drainTimeout):
		for _, f := range c.outputs {
			f.SetReadDeadline(time.Now())
		}
		<-done
	}
	closeAll(c.outputs)
	if c.lw != nil {
		if err := c.lw.close(); err != nil {
			m.log.Warn("close container log", "container", c.id, "err", err)
		}
	}
}

// finish records a container's exit: only after its output is in the log, so
// that "exited" implies the log is complete.
func (m *monitor) finish(c *container, e gorunc.Exit) {
	m.drain(c)
	exit := &Exit{Pid: e.Pid, ExitCode: e.Status, ExitedAt: e.Timestamp.UTC()}
	if c.oomBase >= 0 {
		exit.OOMKilled = c.oom.count() > c.oomBase
	}
	if err := writeExit(m.dir, c.id, exit); err != nil {
		m.log.Error("record exit", "container", c.id, "err", err)
	}
	c.mu.Lock()
	c.exit = exit
	if c.pidfd >= 0 {
		unix.Close(c.pidfd)
		c.pidfd = -1
	}
	close(c.exited)
	c.mu.Unlock()
	m.log.Info("container exited", "container", c.id, "pid", e.Pid, "code", e.Status, "oom", exit.OOMKilled)

	// runc's state of a stopped container serves only its deletion: delete
	// it now, as containerd's shim does on exit, so that the daemon's
	// RemoveContainer waits for no runc spawn. This also removes the
	// container's cgroups (the OOM count above was read first), runs its
	// poststop hooks and kills what is left of it in a shared pid namespace.
	ctx, cancel := context.WithTimeout(context.Background(), deleteTimeout)
	err := m.rt.Delete(ctx, c.id, true)
	cancel()
	if errors.Is(err, runc.ErrNotFound) {
		err = nil
	}
	if err != nil {
		m.log.Warn("delete exited container from the runtime; Delete retries", "container", c.id, "err", err)
	}
	c.mu.Lock()
	c.runcErr = err
	close(c.runcGone)
	c.mu.Unlock()
}

func (m *monitor) start(ctx context.Context, id string) error {
	c := m.lookup(id)
	if c == nil {
		return fmt.Errorf("start %s: %w", id, ErrNotFound)
	}
	if c.exitRecord() != nil {
		return fmt.Errorf("start %s: %w", id, ErrNotRunning)
	}
	if err := m.rt.Start(ctx, id); err != nil {
		return mapRuntimeErr(err)
	}
	return nil
}

func (m *monitor) kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	c := m.lookup(id)
	if c != nil {
		if done, err := c.signal(sig, all); done {
			return err
		}
		// What an exited init left in a shared pid namespace is finish's
		// runc delete --force to kill. Wait for it rather than race it: a
		// runc kill --all meanwhile fails on the cgroups it removes.
		if all && c.exitRecord() != nil {
			if gone, err := m.awaitRuncGone(ctx, c); gone || err != nil {
				return err
			}
		}
	}
	err := m.rt.Kill(ctx, id, sig, all)
	if errors.Is(err, runc.ErrNotFound) || errors.Is(err, runc.ErrNotRunning) {
		return nil
	}
	// The init may exit while runc kill runs, and finish's runc delete
	// then removes the state and cgroups runc kill is reading: the
	// container is dead, which is what the kill was for (its leftovers in
	// a shared pid namespace are that delete's to kill).
	if err != nil && c != nil && c.initExited() {
		if !all {
			return nil
		}
		if gone, werr := m.awaitRuncGone(ctx, c); gone || werr != nil {
			return werr
		}
	}
	return err
}

// awaitRuncGone waits for finish's runc delete of the exited container c
// and says whether it worked.
func (m *monitor) awaitRuncGone(ctx context.Context, c *container) (bool, error) {
	select {
	case <-c.runcGone:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runcErr == nil, nil
}

// signal sends sig to c without runc where that is the same as runc kill
// would do, and says whether it did. That is: nothing to do once the init
// has exited (unless all processes are asked for and some may be left in a
// shared pid namespace); the init alone for !all, except a SIGKILL without
// a pid namespace of its own, which runc extends to every process of the
// container; and, with all, a SIGKILL to the init of a pid namespace of its
// own, whose death takes every process of the namespace with it.
func (c *container) signal(sig syscall.Signal, all bool) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.created {
		return false, nil
	}
	if c.exit != nil {
		return !all || c.ownPidNS, nil
	}
	direct := (!all && (sig != syscall.SIGKILL || c.ownPidNS)) || (all && sig == syscall.SIGKILL && c.ownPidNS)
	if !direct || c.pidfd < 0 {
		return false, nil
	}
	err := unix.PidfdSendSignal(c.pidfd, sig, nil, 0)
	if err == nil || errors.Is(err, unix.ESRCH) {
		return true, nil // ESRCH: exited; the reaper records it
	}
	return true, fmt.Errorf("signal %s: %w", c.id, err)
}

// isPidNSInit says whether pid is the first process of its innermost pid
// namespace, and that namespace is not the monitor's: the last NSpid field
// of /proc/<pid>/status is 1.
func isPidNSInit(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			return len(f) > 1 && f[len(f)-1] == "1"
		}
	}
	return false
}

func (m *monitor) wait(ctx context.Context, id string) (*Exit, error) {
	c := m.lookup(id)
	if c == nil {
		// Deleted already, or from an earlier monitor: the file is the record.
		if e, err := ReadExit(m.dir, id); err == nil {
			return e, nil
		}
		return nil, fmt.Errorf("wait %s: %w", id, ErrNotFound)
	}
	// Wait returns at the exit, before finish's runc delete: that delete
	// only tidies runc's state and cgroups and costs a runc spawn, so
	// StopContainer (and StopPodSandbox, which goes on to the network) does
	// not wait for it. Delete waits for it instead of racing it.
	select {
	case <-c.exited:
		if e := c.exitRecord(); e != nil {
			return e, nil
		}
		return nil, fmt.Errorf("wait %s: create failed: %w", id, ErrNotFound)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (m *monitor) delete(ctx context.Context, id string) error {
	if err := validID(id); err != nil {
		return err
	}
	c := m.lookup(id)
	if c == nil {
		// Deleted already, or never this monitor's: runc may still know it.
		if err := m.rt.Delete(ctx, id, true); err != nil && !errors.Is(err, runc.ErrNotFound) {
			return err
		}
		return nil
	}
	c.mu.Lock()
	created := c.created
	c.mu.Unlock()
	if !created {
		return fmt.Errorf("delete %s: create still in progress", id)
	}
	if c.exitRecord() == nil {
		// The reaper then records the exit and finish deletes runc's state.
		if err := m.kill(ctx, id, syscall.SIGKILL, true); err != nil {
			m.log.Warn("kill before delete", "container", id, "err", err)
		}
	}
	// Wait for the reaper so the exit file is written before Delete
	// returns, and for finish's runc delete rather than race it.
	gone, reaped := false, true
	select {
	case <-c.exited:
		var err error
		if gone, err = m.awaitRuncGone(ctx, c); err != nil {
			return err
		}
	case <-time.After(exitWaitTimeout):
		m.log.Warn("container still not reaped after kill", "container", id, "pid", c.pid)
		reaped = false
	case <-ctx.Done():
		return ctx.Err()
	}
	if !gone {
		if err := m.rt.Delete(ctx, id, true); err != nil && !errors.Is(err, runc.ErrNotFound) {
			return err
		}
	}
	if !reaped {
		m.reaper.unwatch(c.pid)
	}
	m.mu.Lock()
	if m.containers[id] == c {
		delete(m.containers, id)
	}
	m.mu.Unlock()
	if c.stdin != nil {
		c.stdin.Close()
	}
	os.Remove(m.runPath(id + ".pid"))
	os.Remove(m.runPath(id + ".runc.log"))
	m.log.Info("container deleted", "container", id)
	return nil
}

func (m *monitor) reopenLog(id string) error {
	c := m.lookup(id)
	if c == nil {
		return fmt.Errorf("reopen log of %s: %w", id, ErrNotFound)
	}
	if c.exitRecord() != nil {
		return fmt.Errorf("reopen log of %s: %w", id, ErrNotRunning)
	}
	if c.lw == nil {
		return fmt.Errorf("reopen log of %s: container has no log file", id)
	}
	return c.lw.reopen()
}

// shutdown deletes every container left; the caller then exits.
func (m *monitor) shutdown(ctx context.Context) error {
	m.mu.Lock()
	ids := make([]string, 0, len(m.containers))
	for id := range m.containers {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	var errs []error
	for _, id := range ids {
		if err := m.delete(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func mapRuntimeErr(err error) error {
	switch {
	case errors.Is(err, runc.ErrNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, runc.ErrNotRunning):
		return fmt.Errorf("%w: %w", ErrNotRunning, err)
	}
	return err
}

func readPidFile(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("bad pid file %s: %q", path, data)
	}
	return pid, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
