// Package streaming serves exec, attach and port-forward sessions for
// kubectl and crictl. The HTTP/SPDY/WebSocket protocol work is done by
// k8s.io/cri-streaming, the library the kubelet's CRI API points runtimes to
// (containerd and CRI-O use it too), so clients get exactly the protocol
// versions the kubelet speaks; this package supplies the Runtime side:
// processes through the pod's monitor and sockets inside the pod's netns.
package streaming

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	criapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"golang.org/x/sys/unix"

	"github.com/pod-shim/pod-shim/pkg/container"
	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/oci"
	"github.com/pod-shim/pod-shim/pkg/pipedrain"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// Options configure the stream server.
type Options struct {
	Address     string // host to listen on; default 127.0.0.1
	Port        int    // 0 picks a free port
	TLS         *tls.Config
	IdleTimeout time.Duration // 0 = the library's default (4 h)
	Containers  *container.Manager
	Sandboxes   *sandbox.Manager
	Logger      *slog.Logger
}

// Server is the running stream server.
type Server struct {
	lib  streaming.Server
	http *http.Server
	ln   net.Listener
	log  *slog.Logger
	rt   *runtime
}

// Start listens and serves in the background until Close.
func Start(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Address == "" {
		o.Address = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(o.Address, strconv.Itoa(o.Port)))
	if err != nil {
		return nil, fmt.Errorf("stream server: %w", err)
	}
	cfg := streaming.DefaultConfig
	cfg.Addr = ln.Addr().String()
	scheme := "http"
	if o.TLS != nil {
		scheme = "https"
		cfg.TLSConfig = o.TLS
	}
	// The URL handed to clients names the bound port, known only now.
	cfg.BaseURL = &url.URL{Scheme: scheme, Host: cfg.Addr}
	if o.IdleTimeout > 0 {
		cfg.StreamIdleTimeout = o.IdleTimeout
	}
	rt := &runtime{containers: o.Containers, sandboxes: o.Sandboxes, log: o.Logger}
	lib, err := streaming.NewServer(cfg, rt)
	if err != nil {
		ln.Close()
		return nil, err
	}
	s := &Server{lib: lib, ln: ln, log: o.Logger, rt: rt,
		http: &http.Server{Handler: lib, ReadHeaderTimeout: 30 * time.Second, TLSConfig: o.TLS}}
	go func() {
		var err error
		if o.TLS != nil {
			err = s.http.ServeTLS(ln, "", "")
		} else {
			err = s.http.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("stream server stopped", "error", err)
		}
	}()
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops listening and ends open sessions (their processes are killed
// by the monitors when the sessions' connections close).
func (s *Server) Close() error {
	err := s.http.Close()
	s.rt.wg.Wait()
	return err
}

// GetExec validates and returns the URL a client opens for an exec.
func (s *Server) GetExec(r *criapi.ExecRequest) (*criapi.ExecResponse, error) {
	return s.lib.GetExec(r)
}

// GetAttach returns the URL a client opens for an attach.
func (s *Server) GetAttach(r *criapi.AttachRequest) (*criapi.AttachResponse, error) {
	return s.lib.GetAttach(r)
}

// GetPortForward returns the URL a client opens for a port-forward.
func (s *Server) GetPortForward(r *criapi.PortForwardRequest) (*criapi.PortForwardResponse, error) {
	return s.lib.GetPortForward(r)
}

// runtime is the library's Runtime: it runs the sessions.
type runtime struct {
	containers *container.Manager
	sandboxes  *sandbox.Manager
	log        *slog.Logger
	wg         sync.WaitGroup
}

// ErrUnsupported marks what this runtime cannot do yet.
var ErrUnsupported = errors.New("not supported")

// outputDrain bounds the wait for output after the process ended: a child
// it left behind may hold the pipes open forever.
const outputDrain = 2 * time.Second

// firstSizeWait bounds the wait for a client's first terminal size; only a
// client that never sends one waits that long.
const firstSizeWait = 500 * time.Millisecond

// firstSize is the terminal size the client sends as the session opens
// (kubectl and crictl send theirs at once), or nil if none comes within
// wait. The exec's process is made with it: runc sizes the pty before the
// process runs, where a resize applied after the start lets a first
// `stty size`, or typing the client sent ahead, meet a 0x0 terminal.
func firstSize(ctx context.Context, resize <-chan remotecommand.TerminalSize, wait time.Duration) *specs.Box {
	if resize == nil {
		return nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case sz, ok := <-resize:
		if !ok || sz.Width == 0 || sz.Height == 0 {
			return nil
		}
		return &specs.Box{Width: uint(sz.Width), Height: uint(sz.Height)}
	case <-timer.C:
	case <-ctx.Done():
	}
	return nil
}

// runningContainer is the container a session (exec or attach) goes to,
// and its pod; a container that is not running has none.
func (r *runtime) runningContainer(containerID string) (*container.Container, *sandbox.Sandbox, error) {
	c, err := r.containers.Get(containerID)
	if err != nil {
		return nil, nil, err
	}
	if c.State != container.StateRunning {
		return nil, nil, fmt.Errorf("container %s is %s: %w", c.ID, c.State, container.ErrState)
	}
	sb, err := r.sandboxes.Get(c.SandboxID)
	if err != nil {
		return nil, nil, err
	}
	return c, sb, nil
}

func (r *runtime) Exec(ctx context.Context, containerID string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	r.wg.Add(1)
	defer r.wg.Done()
	c, sb, err := r.runningContainer(containerID)
	if err != nil {
		return err
	}
	spec, err := oci.ReadBundle(c.Bundle)
	if err != nil {
		return fmt.Errorf("read container spec: %w", err)
	}
	proc := *spec.Process
	proc.Args = cmd
	proc.Terminal = tty
	proc.ConsoleSize = nil
	if tty {
		proc.Env = append(proc.Env, "TERM=xterm")
	}
	mon, err := r.sandboxes.Monitor(ctx, sb)
	if err != nil {
		return err
	}
	// The session ends the exec: cancelling sctx closes the monitor
	// connection, and the monitor kills the process.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if tty {
		return r.execTTY(sctx, cancel, mon, c.ID, proc, in, out, resize)
	}
	return r.execPipes(sctx, cancel, mon, c.ID, proc, in, out, errw)
}

func (r *runtime) execPipes(ctx context.Context, cancel context.CancelFunc, mon *monitor.Client, id string, proc specs.Process, in io.Reader, out, errw io.WriteCloser) error {
	p, err := newSessionPipes(in != nil)
	defer p.close()
	if err != nil {
		return err
	}
	stdinW, outR, errR := p.stdinW, p.outR, p.errR
	stdio := monitor.StreamStdio{Stdin: p.stdin, Stdout: p.stdout, Stderr: p.stderr}

	es, err := mon.ExecStream(ctx, monitor.StreamExecRequest{ContainerID: id, Process: proc, Stdin: in != nil}, stdio)
	if err != nil {
		return err
	}
	defer es.Close()
	p.handedOver() // the monitor has its own copies now

	var copiers sync.WaitGroup
	copyOut := func(dst io.Writer, src *os.File) {
		defer copiers.Done()
		if _, err := io.Copy(dst, src); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			// The client went away: nobody reads this session any more.
			cancel()
		}
	}
	copiers.Add(2)
	go copyOut(nopCloser(out), outR)
	go copyOut(nopCloser(errw), errR)
	if in != nil {
		go func() {
			io.Copy(stdinW, in)
			stdinW.Close()
		}()
	}
	code, werr := es.Wait(ctx)
	pipedrain.Wait(&copiers, outputDrain, outR, errR)
	if werr != nil {
		return werr
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

func (r *runtime) execTTY(ctx context.Context, cancel context.CancelFunc, mon *monitor.Client, id string, proc specs.Process, in io.Reader, out io.WriteCloser, resize <-chan remotecommand.TerminalSize) error {
	proc.ConsoleSize = firstSize(ctx, resize, firstSizeWait)
	es, err := mon.ExecStream(ctx, monitor.StreamExecRequest{ContainerID: id, Process: proc}, monitor.StreamStdio{})
	if err != nil {
		return err
	}
	defer es.Close()
	master := es.Console
	var wg sync.WaitGroup
	done := make(chan struct{})
	if resize != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case sz, ok := <-resize:
					if !ok {
						return
					}
					unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: sz.Height, Col: sz.Width})
				case <-done:
					return
				}
			}
		}()
	}
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		// EIO once the process's side of the pty is gone.
		if _, err := io.Copy(nopCloser(out), master); err != nil && !isPtyEnd(err) {
			cancel()
		}
	}()
	if in != nil {
		go func() { io.Copy(master, in) }() // ends when the master is closed
	}
	code, werr := es.Wait(ctx)
	select {
	case <-outDone:
	case <-time.After(outputDrain):
	}
	// The resize goroutine uses the pty master's fd: it must be gone before
	// the master is closed.
	close(done)
	wg.Wait()
	es.Close()
	if werr != nil {
		return werr
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

// Attach connects the client to a running container's stdio through the
// pod's monitor, which reads the container's output anyway (for the log)
// and holds its stdin pipe or pty master. It returns when the container
// exits or the client goes away (seen when a write to it fails or its
// stdin stream breaks); the monitor then drops the client's pipes.
func (r *runtime) Attach(ctx context.Context, containerID string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	r.wg.Add(1)
	defer r.wg.Done()
	c, sb, err := r.runningContainer(containerID)
	if err != nil {
		return err
	}
	mon, err := r.sandboxes.Monitor(ctx, sb)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()

	p, err := newSessionPipes(in != nil)
	defer p.close()
	if err != nil {
		return err
	}
	stdinW, outR, errR := p.stdinW, p.outR, p.errR
	stdio := monitor.AttachStdio{Stdin: p.stdin, Stdout: p.stdout, Stderr: p.stderr}

	as, err := mon.Attach(sctx, monitor.AttachRequest{ContainerID: c.ID, Stdin: in != nil}, stdio)
	if err != nil {
		return err
	}
	defer as.Close()
	p.handedOver() // the monitor has its own copies now

	var copiers sync.WaitGroup
	copyOut := func(dst io.Writer, src *os.File) {
		defer copiers.Done()
		if dst == nil {
			dst = io.Discard
		}
		if _, err := io.Copy(dst, src); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			cancel() // the client went away
		}
	}
	copiers.Add(2)
	go copyOut(writerOrNil(out), outR)
	go copyOut(writerOrNil(errw), errR)
	if in != nil {
		go func() {
			_, err := io.Copy(stdinW, in)
			// The client's stdin ended: the monitor closes the
			// container's stdin now if it is stdin_once.
			stdinW.Close()
			if err != nil && !errors.Is(err, os.ErrClosed) {
				cancel() // its stream broke: the client is gone
			}
		}()
	}
	done := make(chan struct{})
	defer close(done)
	// The container's own tty setting decides (a client asking for a tty
	// on a container without one just gets its streams, as with kubectl).
	if c.Config.Tty && resize != nil {
		go func() {
			for {
				select {
				case sz, ok := <-resize:
					if !ok {
						return
					}
					rctx, rcancel := context.WithTimeout(sctx, 10*time.Second)
					if err := mon.Resize(rctx, c.ID, sz.Width, sz.Height); err != nil {
						r.log.Debug("attach: resize", "container", c.ID, "error", err)
					}
					rcancel()
				case <-done:
					return
				}
			}
		}()
	}
	_, werr := as.Wait(sctx)
	if werr != nil {
		as.Close() // detach: the monitor closes the output pipes
	}
	pipedrain.Wait(&copiers, outputDrain, outR, errR)
	if werr != nil && sctx.Err() == nil {
		return werr
	}
	return nil
}

// writerOrNil turns a nil stream (one the client did not ask for) into a
// nil io.Writer rather than a non-nil interface holding nil.
func writerOrNil(w io.WriteCloser) io.Writer {
	if w == nil {
		return nil
	}
	return nopCloser(w)
}

func isPtyEnd(err error) bool {
	return errors.Is(err, unix.EIO) || errors.Is(err, os.ErrClosed)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

func nopCloser(w io.Writer) io.Writer { return nopWriteCloser{w} }

// sessionPipes is the pipes of a non-tty exec or attach session: the
// monitor gets the session's ends (stdin's read end, the write ends of
// stdout and stderr), the daemon keeps the others to copy the client's
// streams through.
type sessionPipes struct {
	stdin, stdout, stderr *os.File // the monitor's ends; stdin nil without one
	stdinW, outR, errR    *os.File // the daemon's
	ours, theirs          []*os.File
}

// newSessionPipes makes the pipes, with one for stdin if withStdin. Close
// the result even when it fails: what was made is closed then.
func newSessionPipes(withStdin bool) (*sessionPipes, error) {
	p := &sessionPipes{}
	if withStdin {
		rd, wr, err := os.Pipe()
		if err != nil {
			return p, err
		}
		p.stdin, p.stdinW = rd, wr
		p.theirs, p.ours = append(p.theirs, rd), append(p.ours, wr)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return p, err
	}
	p.theirs, p.ours = append(p.theirs, outW), append(p.ours, outR)
	errR, errW, err := os.Pipe()
	if err != nil {
		return p, err
	}
	p.theirs, p.ours = append(p.theirs, errW), append(p.ours, errR)
	p.stdout, p.stderr, p.outR, p.errR = outW, errW, outR, errR
	return p, nil
}

// handedOver closes the monitor's ends once it holds its own copies.
func (p *sessionPipes) handedOver() {
	closeFiles(p.theirs)
	p.theirs = nil
}

// close closes every pipe end still open.
func (p *sessionPipes) close() {
	closeFiles(p.ours)
	closeFiles(p.theirs)
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
