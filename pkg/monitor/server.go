package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	gorunc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"

	"github.com/pod-shim/pod-shim/pkg/runc"
	"github.com/pod-shim/pod-shim/pkg/unixsock"
)

// Tunables of the monitor process.
const (
	// gcPercent and memoryLimit keep the heap near its live size: the
	// monitor's live heap is tens of KiB, and the default GOGC=100 would let
	// garbage from each request double it before collecting.
	gcPercent   = 25
	memoryLimit = 6 << 20

	maxMonitorLog   = 1 << 20          // monitor.log is truncated at start past this
	requestTimeout  = 30 * time.Second // a client must send its request within this
	createTimeout   = 2 * time.Minute  // runc create/run when the caller set no deadline
	drainTimeout    = 2 * time.Second  // output still arriving after the init exited
	exitWaitTimeout = 10 * time.Second // Delete waiting for the reaper to see the kill
	deleteTimeout   = 30 * time.Second // runc delete of an exited container
)

// Main is the monitor process: `pod-shim monitor --id ID --dir DIR --runtime
// RUNC --runtime-root ROOT`. It returns the process exit code.
func Main(args []string) int {
	fs := flag.NewFlagSet("monitor", flag.ContinueOnError)
	id := fs.String("id", "", "sandbox id")
	dir := fs.String("dir", "", "pod state dir")
	rtBin := fs.String("runtime", "runc", "OCI runtime binary")
	rtRoot := fs.String("runtime-root", "", "OCI runtime state root")
	readyFD := fs.Int("ready-fd", -1, "fd to report readiness on")
	maxLogLine := fs.Int("max-log-line", DefaultMaxLogLine, "longest CRI log record; longer lines are split into partial records")
	systemdCgroup := fs.Bool("systemd-cgroup", false, "run the runtime with --systemd-cgroup")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var ready *os.File
	if *readyFD > 2 {
		ready = os.NewFile(uintptr(*readyFD), "ready")
	}
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "monitor: %v\n", err)
		if ready != nil {
			fmt.Fprint(ready, err.Error())
			ready.Close()
		}
		return 1
	}
	if *id == "" || *dir == "" || *rtRoot == "" {
		return fail(errors.New("--id, --dir and --runtime-root are required"))
	}
	if *maxLogLine < minMaxLogLine || *maxLogLine > maxMaxLogLine {
		return fail(fmt.Errorf("--max-log-line %d: must be between %d and %d", *maxLogLine, minMaxLogLine, maxMaxLogLine))
	}

	// Memory profiling has no reader here; off, it allocates no sample
	// buckets nor their 1.4 MiB hash table in every monitor.
	goruntime.MemProfileRate = 0
	if os.Getenv(maxProcsEnv) != "" {
		// Start set GOMAXPROCS for the runtime's own start; runc and the
		// containers' execs must not inherit it.
		os.Unsetenv("GOMAXPROCS")
		os.Unsetenv(maxProcsEnv)
	}
	debug.SetGCPercent(gcPercent)
	debug.SetMemoryLimit(memoryLimit)
	// The monitor only copies pipes and waits for runc, which one P does
	// fine; every extra P brings threads and caches that cost ~200 KiB per
	// monitor with a few containers (measured), paid on every pod.
	if os.Getenv("GOMAXPROCS") == "" {
		goruntime.GOMAXPROCS(1)
	}

	logger, closeLog, err := openMonitorLog(*dir)
	if err != nil {
		return fail(err)
	}
	defer closeLog()
	logger = logger.With("sandbox", *id)

	// Containers are reparented to the monitor once runc exits, so it can
	// reap them and learn their exit codes.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fail(fmt.Errorf("become subreaper: %w", err))
	}
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	rp := newReaper()
	defer rp.stop()
	gorunc.Monitor = rp

	m := &monitor{
		id:         *id,
		dir:        *dir,
		rt:         runc.New(*rtBin, *rtRoot).WithSystemdCgroup(*systemdCgroup),
		reaper:     rp,
		log:        logger,
		maxLine:    *maxLogLine,
		containers: make(map[string]*container),
		done:       make(chan struct{}),
	}
	for _, d := range []string{exitsDir, runDir} {
		if err := os.MkdirAll(filepath.Join(m.dir, d), 0o711); err != nil {
			return fail(err)
		}
	}
	// A previous monitor's socket, if any, is dead (Connect found nobody
	// there): Listen replaces it.
	ln, err := listen(m.dir)
	if err != nil {
		return fail(err)
	}
	pidFile := filepath.Join(m.dir, PidName)
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		ln.Close()
		return fail(err)
	}
	if ready != nil {
		fmt.Fprint(ready, "ok")
		ready.Close()
	}
	logger.Info("monitor serving", "pid", os.Getpid())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.serve(ctx, ln)
	}()

	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-m.done:
		logger.Info("monitor shutting down")
	case s := <-term:
		// Containers keep running: they are separate processes, and a
		// new daemon can clean them up through the runtime.
		logger.Warn("monitor stopped by signal; containers left running", "signal", s)
	}
	signal.Stop(term)
	ln.Close() // removes the socket
	os.Remove(pidFile)
	cancel()
	wg.Wait()
	return 0
}

func openMonitorLog(dir string) (*slog.Logger, func(), error) {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, nil, err
	}
	path := filepath.Join(dir, LogName)
	if st, err := os.Stat(path); err == nil && st.Size() > maxMonitorLog {
		os.Truncate(path, 0)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("open monitor log: %w", err)
	}
	return slog.New(slog.NewTextHandler(f, nil)), func() { f.Close() }, nil
}

// monitor is the state of the monitor process.
type monitor struct {
	id      string
	dir     string
	rt      *runc.Runtime
	reaper  *reaper
	log     *slog.Logger
	maxLine int

	mu         sync.Mutex // guards containers only; never held across runc
	containers map[string]*container

	doneOnce sync.Once
	done     chan struct{} // closed by Shutdown
}

// listen serves the pod's monitor socket: mode 0600 in a 0700 directory of
// its own, both whatever the umask, because whoever talks to the monitor
// can run processes as root in the pod's containers. The pod dir itself
// stays traversable: runc in a user namespace reads bind-mount sources
// (hosts, resolv.conf) under it.
func listen(dir string) (*unixsock.Listener, error) {
	sdir := filepath.Join(dir, socketDir)
	if err := os.Mkdir(sdir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("listen: %w", err)
	}
	fi, err := os.Lstat(sdir)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("listen: %s is not a directory (%s)", sdir, fi.Mode().Type())
	}
	if err := os.Chmod(sdir, 0o700); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	ln, err := unixsock.Listen(SocketPath(dir), 0o600)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

// peerAllowed says whether a connection comes from root (or the monitor's
// own user, which is root outside of unit tests). The socket's modes keep
// others out already; this holds even if they were widened by hand, or the
// socket were passed to a process that dropped its privileges.
func peerAllowed(conn net.Conn) (bool, *unix.Ucred) {
	cred, err := unixsock.PeerCred(conn)
	if err != nil {
		return false, nil
	}
	return cred.Uid == 0 || int(cred.Uid) == os.Geteuid(), cred
}

// serve accepts connections until ctx ends; each connection is one request.
func (m *monitor) serve(ctx context.Context, ln net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			m.log.Warn("accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if ok, cred := peerAllowed(conn); !ok {
			if cred != nil {
				m.log.Warn("refused a connection from a non-root peer", "uid", cred.Uid, "pid", cred.Pid)
			} else {
				m.log.Warn("refused a connection whose peer is unknown")
			}
			conn.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.handle(ctx, conn)
		}()
	}
}

func (m *monitor) handle(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(requestTimeout))
	req, err := readRequest(conn)
	if err != nil {
		return
	}
	conn.SetReadDeadline(time.Time{})
	if req.Method == methodExecStream { // more follows on conn: see stream.go
		m.execStream(ctx, conn, req.Params)
		return
	}
	if req.Method == methodAttach { // likewise: see attach.go
		m.attach(ctx, conn, req.Params)
		return
	}

	// The client sends nothing after its request, so a read that ends
	// means it hung up (or its context ended): cancel the handler. The one
	// exception is the newline json.Encoder writes after the request, which
	// the decoder above may leave unread when the request spans reads; a
	// cancel on that byte used to SIGKILL the runc of a large Create.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer cancel()
		var b [1]byte
		for {
			n, err := conn.Read(b[:])
			if err != nil || (n == 1 && !isJSONSpace(b[0])) {
				return
			}
		}
	}()

	result, err := m.dispatch(ctx, req)
	var resp response
	if err != nil {
		resp.Error = err.Error()
		resp.Code = codeOf(err)
		m.log.Debug("request failed", "method", req.Method, "err", err)
	} else if result != nil {
		if resp.Result, err = json.Marshal(result); err != nil {
			resp.Error = err.Error()
		}
	}
	conn.SetWriteDeadline(time.Now().Add(requestTimeout))
	json.NewEncoder(conn).Encode(resp)
	if req.Method == "Shutdown" && err == nil {
		m.doneOnce.Do(func() { close(m.done) })
	}
}

// maxRequest caps one request. The largest the daemon sends, a Create or an
// Exec with its process spec, is a few KiB.
const maxRequest = 1 << 20

// readRequest decodes a connection's request. Bytes after it stay unread
// in the decoder's buffer at most: the request is the first JSON value.
func readRequest(r io.Reader) (request, error) {
	var req request
	if err := json.NewDecoder(io.LimitReader(r, maxRequest)).Decode(&req); err != nil {
		return request{}, err
	}
	if req.Method == "" {
		return request{}, errors.New("request without a method")
	}
	return req, nil
}

// decodeParams is the typed params of a method, checked: an unknown method,
// missing or malformed params, or an id unfit as a file name is an error
// before anything runs.
func decodeParams(method string, raw json.RawMessage) (any, error) {
	var p any
	var ids func() []string
	switch method {
	case "Ping", "Shutdown":
		return nil, nil
	case "Create":
		v := &CreateRequest{}
		p, ids = v, func() []string { return []string{v.ID} }
	case "Start", "Wait", "Delete", "ReopenLog":
		v := &idParams{}
		p, ids = v, func() []string { return []string{v.ID} }
	case "Kill":
		v := &killParams{}
		p, ids = v, func() []string { return []string{v.ID} }
	case "Exec":
		v := &ExecRequest{}
		p, ids = v, func() []string { return []string{v.ContainerID} }
	case "Resize":
		v := &resizeParams{}
		p, ids = v, func() []string { return []string{v.ID} }
	case methodExecStream:
		v := &StreamExecRequest{}
		p, ids = v, func() []string { return []string{v.ContainerID} }
	case methodAttach:
		v := &AttachRequest{}
		p, ids = v, func() []string { return []string{v.ContainerID} }
	default:
		return nil, fmt.Errorf("unknown method %q", method)
	}
	if len(raw) == 0 {
		return nil, errors.New("missing params")
	}
	if err := json.Unmarshal(raw, p); err != nil {
		return nil, err
	}
	for _, id := range ids() {
		if err := validID(id); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (m *monitor) dispatch(ctx context.Context, req request) (any, error) {
	params, err := decodeParams(req.Method, req.Params)
	if err != nil {
		return nil, err
	}
	switch p := params.(type) {
	case nil:
		if req.Method == "Shutdown" {
			return nil, m.shutdown(ctx)
		}
		return pingResult{Pid: os.Getpid()}, nil
	case *CreateRequest:
		pid, err := m.create(ctx, *p)
		if err != nil {
			return nil, err
		}
		return pidResult{Pid: pid}, nil
	case *idParams:
		switch req.Method {
		case "Start":
			return nil, m.start(ctx, p.ID)
		case "Wait":
			return m.wait(ctx, p.ID)
		case "Delete":
			return nil, m.delete(ctx, p.ID)
		case "ReopenLog":
			return nil, m.reopenLog(p.ID)
		}
	case *killParams:
		return nil, m.kill(ctx, p.ID, syscall.Signal(p.Signal), p.All)
	case *ExecRequest:
		return m.exec(ctx, *p)
	case *resizeParams:
		return nil, m.resize(p.ID, p.Width, p.Height)
	}
	return nil, fmt.Errorf("method %q is not served here", req.Method)
}

func (m *monitor) lookup(id string) *container {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.containers[id]
}

func (m *monitor) runPath(name string) string { return filepath.Join(m.dir, runDir, name) }

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
