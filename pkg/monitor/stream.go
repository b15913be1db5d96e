package monitor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	gorunc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/pod-shim/pod-shim/pkg/runc"
)

// Streaming exec (kubectl exec / crictl exec -it): the daemon owns the
// client's streams and the monitor owns the process. The daemon makes the
// pipes and hands the process's ends to the monitor over the socket
// (SCM_RIGHTS); for a tty, runc makes the pty and the monitor hands its
// master back the same way. The monitor runs `runc exec`, reports the exit
// code on the connection, and kills the process if the daemon hangs up first.
//
// Wire, on one connection:
//
//	daemon → {"method":"ExecStream","params":StreamExecRequest}
//	monitor → "ok\n" or a response line with the error, then closes
//	daemon → 1 byte + fds [stdin?, stdout, stderr]      (not for a tty)
//	monitor → 1 byte + fd [pty master]                  (tty only)
//	monitor → response line {"result":{"exit_code":N}} when the process ends
const methodExecStream = "ExecStream"

// StreamExecRequest is one streaming exec.
type StreamExecRequest struct {
	ContainerID string        `json:"container_id"`
	Process     specs.Process `json:"process"` // Process.Terminal selects the pty mode
	Stdin       bool          `json:"stdin"`   // non-tty: an fd for stdin follows
}

// StreamStdio is the process's ends of the pipes, for a non-tty exec.
type StreamStdio struct {
	Stdin, Stdout, Stderr *os.File // Stdin may be nil
}

// ExecStream is a running streaming exec seen from the daemon.
type ExecStream struct {
	conn *net.UnixConn
	br   *bufio.Reader
	// Console is the pty master of a tty exec (nil otherwise): copy the
	// client's streams to and from it, resize with unix.IoctlSetWinsize.
	Console *os.File
}

type streamResult struct {
	ExitCode int `json:"exit_code"`
}

// ExecStream starts a streaming exec. For a non-tty exec io holds the
// process's ends of the pipes; the caller closes its copies once this
// returns. Cancelling ctx (or Close) kills the process.
func (c *Client) ExecStream(ctx context.Context, req StreamExecRequest, stdio StreamStdio) (*ExecStream, error) {
	return c.openStream(ctx, methodExecStream, req, func(conn *net.UnixConn, br *bufio.Reader) (*ExecStream, error) {
		es := &ExecStream{conn: conn, br: br}
		if !req.Process.Terminal {
			if err := sendStdio(ctx, conn, methodExecStream, req.Stdin, stdio.Stdin, stdio.Stdout, stdio.Stderr); err != nil {
				return nil, err
			}
			return es, nil
		}
		// The monitor sent nothing after "ok\n" but this message, so the
		// buffered reader holds nothing of it.
		fds, err := recvFDs(conn, 1)
		if errors.Is(err, errNoFDs) {
			// 'E': the monitor reports why runc failed instead of a master.
			line, rerr := br.ReadBytes('\n')
			if rerr != nil {
				return nil, fmt.Errorf("monitor ExecStream: %w", ctxErr(ctx, rerr))
			}
			return nil, decodeResponse(line, nil)
		}
		if err != nil {
			return nil, fmt.Errorf("monitor ExecStream: receive console: %w", ctxErr(ctx, err))
		}
		es.Console = os.NewFile(uintptr(fds[0]), "pty-master")
		return es, nil
	})
}

// openStream is the start both streaming methods (ExecStream, Attach)
// share: it sends the request on a connection of its own and waits for
// the monitor's "ok\n", then hands the connection to setup, which passes
// the fds. While setup runs, cancelling ctx fails its reads and writes;
// the connection is closed unless setup returns a stream.
func (c *Client) openStream(ctx context.Context, method string, req any, setup func(*net.UnixConn, *bufio.Reader) (*ExecStream, error)) (*ExecStream, error) {
	if c.closed.Load() {
		return nil, errors.New("monitor " + method + ": client closed")
	}
	params, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", c.sock)
	if err != nil {
		return nil, fmt.Errorf("monitor %s: %w", method, err)
	}
	conn := nc.(*net.UnixConn)
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := json.NewEncoder(conn).Encode(request{Method: method, Params: params}); err != nil {
		return nil, fmt.Errorf("monitor %s: %w", method, ctxErr(ctx, err))
	}
	br := bufio.NewReaderSize(conn, 512)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("monitor %s: %w", method, ctxErr(ctx, err))
	}
	if string(line) != "ok\n" {
		return nil, decodeResponse(line, nil)
	}
	es, err := setup(conn, br)
	if err != nil {
		return nil, err
	}
	ok = true
	return es, nil
}

// sendStdio passes the process's ends of the pipes to the monitor in one
// message: stdin first when there is one, then stdout and stderr.
func sendStdio(ctx context.Context, conn *net.UnixConn, method string, withStdin bool, stdin, stdout, stderr *os.File) error {
	files := []*os.File{stdout, stderr}
	if withStdin {
		files = append([]*os.File{stdin}, files...)
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	if _, _, err := conn.WriteMsgUnix([]byte{'F'}, unix.UnixRights(fds...), nil); err != nil {
		return fmt.Errorf("monitor %s: send stdio: %w", method, ctxErr(ctx, err))
	}
	return nil
}

// recvStdio is the monitor's side of sendStdio: it waits (for
// requestTimeout at most) for the fds and names them prefix-0, prefix-1...
func recvStdio(uc *net.UnixConn, withStdin bool, prefix string) ([]*os.File, error) {
	n := 2
	if withStdin {
		n = 3
	}
	uc.SetReadDeadline(time.Now().Add(requestTimeout))
	fds, err := recvFDs(uc, n)
	uc.SetReadDeadline(time.Time{})
	if err != nil {
		return nil, err
	}
	files := make([]*os.File, n)
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), prefix+"-"+strconv.Itoa(i))
	}
	return files, nil
}

// replyError answers a streaming request with err instead of "ok\n".
func replyError(conn net.Conn, err error) {
	resp := response{Error: err.Error(), Code: codeOf(err)}
	conn.SetWriteDeadline(time.Now().Add(requestTimeout))
	json.NewEncoder(conn).Encode(resp)
}

// Wait blocks until the process ends and returns its exit code. Cancelling
// ctx kills the process.
func (e *ExecStream) Wait(ctx context.Context) (int, error) {
	stop := context.AfterFunc(ctx, func() { e.conn.Close() })
	defer stop()
	line, err := e.br.ReadBytes('\n')
	if err != nil {
		return 0, fmt.Errorf("monitor ExecStream: %w", ctxErr(ctx, err))
	}
	var r streamResult
	if err := decodeResponse(line, &r); err != nil {
		return 0, err
	}
	return r.ExitCode, nil
}

// Close ends the exec: a process still running is killed by the monitor.
func (e *ExecStream) Close() error {
	if e.Console != nil {
		e.Console.Close()
	}
	return e.conn.Close()
}

func decodeResponse(line []byte, result any) error {
	var resp response
	if err := json.Unmarshal(line, &resp); err != nil {
		return fmt.Errorf("monitor ExecStream: bad reply %q: %w", line, err)
	}
	if resp.Error != "" {
		return &remoteError{msg: "monitor ExecStream: " + resp.Error, sentinel: codes[resp.Code]}
	}
	if result != nil && len(resp.Result) > 0 {
		return json.Unmarshal(resp.Result, result)
	}
	return nil
}

// errNoFDs is recvFDs's answer to an 'E' byte: an error line follows.
var errNoFDs = errors.New("peer sent an error instead of fds")

// recvFDs reads one message carrying n fds, skipping any bytes before it,
// or returns errNoFDs when the peer sent 'E' instead.
func recvFDs(conn *net.UnixConn, n int) ([]int, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4*n))
	for {
		nb, noob, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return nil, err
		}
		if noob > 0 {
			msgs, err := unix.ParseSocketControlMessage(oob[:noob])
			if err != nil {
				return nil, err
			}
			var fds []int
			for _, m := range msgs {
				f, err := unix.ParseUnixRights(&m)
				if err == nil {
					fds = append(fds, f...)
				}
			}
			if len(fds) != n {
				for _, fd := range fds {
					unix.Close(fd)
				}
				return nil, fmt.Errorf("got %d fds, want %d", len(fds), n)
			}
			return fds, nil
		}
		if nb == 0 {
			return nil, errors.New("connection closed before the fds")
		}
		if buf[0] == 'E' {
			return nil, errNoFDs
		}
	}
}

// execStream serves one ExecStream connection; it owns conn. It is called
// from handle before its hang-up watcher starts, since the fds come after
// the request on the same connection.
func (m *monitor) execStream(ctx context.Context, conn net.Conn, raw json.RawMessage) {
	uc, _ := conn.(*net.UnixConn)
	fail := func(err error) { replyError(conn, err) }
	var req StreamExecRequest
	if err := json.Unmarshal(raw, &req); err != nil || uc == nil {
		fail(fmt.Errorf("bad ExecStream request: %v", err))
		return
	}
	c := m.lookup(req.ContainerID)
	switch {
	case c == nil:
		fail(fmt.Errorf("exec in %s: %w", req.ContainerID, ErrNotFound))
		return
	case c.exitRecord() != nil:
		fail(fmt.Errorf("exec in %s: %w", req.ContainerID, ErrNotRunning))
		return
	case len(req.Process.Args) == 0:
		fail(fmt.Errorf("exec in %s: no command", req.ContainerID))
		return
	}
	if _, err := conn.Write([]byte("ok\n")); err != nil {
		return
	}
	var stdio runc.IO
	if !req.Process.Terminal {
		files, err := recvStdio(uc, req.Stdin, "exec-stdio")
		if err != nil {
			m.log.Debug("exec stream: no stdio", "err", err)
			return
		}
		defer closeAll(files)
		if req.Stdin {
			stdio.Stdin, files = files[0], files[1:]
		}
		stdio.Stdout, stdio.Stderr = files[0], files[1]
	}

	// The daemon sends nothing more: a read that returns means it hung up.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hangup := func() {
		var b [1]byte
		conn.Read(b[:])
		cancel()
	}
	if !req.Process.Terminal {
		go hangup()
	}

	name := "exec-" + strconv.FormatUint(execSeq.Add(1), 10)
	pidFile, logFile := m.runPath(name+".pid"), m.runPath(name+".log")
	defer os.Remove(pidFile)
	defer os.Remove(logFile)
	r := &gorunc.Runc{Command: m.rt.Binary(), Root: m.rt.Root(), Log: logFile, LogFormat: gorunc.JSON}
	opts := &gorunc.ExecOpts{PidFile: pidFile}
	since := time.Now()
	var sock *gorunc.Socket
	var sinceTTY time.Time
	if req.Process.Terminal {
		var err error
		if sock, err = gorunc.NewTempConsoleSocket(); err != nil {
			fail(err)
			return
		}
		defer sock.Close()
		// runc takes a console socket only when it detaches; the process
		// is then the monitor's child (subreaper) and the reaper reports
		// its exit.
		opts.ConsoleSocket = sock
		opts.Detach = true
		sinceTTY = since
	} else {
		opts.IO = &streamIO{io: stdio}
	}

	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	done := make(chan error, 1)
	go func() { done <- r.Exec(runCtx, req.ContainerID, req.Process, opts) }()

	if sock != nil {
		code, err := m.execTTY(ctx, uc, sock, done, pidFile, sinceTTY, hangup)
		if err != nil {
			if err != errHungUp {
				conn.Write([]byte{'E'})
				fail(execError(err, logFile, nil))
			}
			return
		}
		data, _ := json.Marshal(streamResult{ExitCode: code})
		conn.SetWriteDeadline(time.Now().Add(requestTimeout))
		json.NewEncoder(conn).Encode(response{Result: data})
		return
	}

	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		m.killExec(pidFile, done, cancelRun)
		m.log.Debug("exec stream: daemon hung up; process killed", "container", req.ContainerID)
		return
	}
	res := streamResult{}
	if err != nil {
		status, ok := runc.ExitStatus(err)
		if !ok || !fileExists(pidFile) {
			fail(execError(err, logFile, nil))
			return
		}
		res.ExitCode = status
	}
	data, _ := json.Marshal(res)
	conn.SetWriteDeadline(time.Now().Add(requestTimeout))
	json.NewEncoder(conn).Encode(response{Result: data})
}

// errHungUp: the daemon went away and the process was killed.
var errHungUp = errors.New("daemon hung up")

// execTTY finishes a detached tty exec: it passes the pty master to the
// daemon and waits for the process through the reaper.
func (m *monitor) execTTY(ctx context.Context, uc *net.UnixConn, sock *gorunc.Socket, done <-chan error, pidFile string, since time.Time, hangup func()) (int, error) {
	type got struct {
		master *os.File
		err    error
	}
	mc := make(chan got, 1)
	go func() {
		c, err := sock.ReceiveMaster()
		if err != nil {
			mc <- got{err: err}
			return
		}
		mc <- got{master: os.NewFile(c.Fd(), "pty-master")}
	}()
	// runc returns once the process runs (it sent the master before); if
	// it fails, it never sends one, so the socket is closed to end the wait.
	if err := <-done; err != nil {
		sock.Close()
		if g := <-mc; g.master != nil {
			g.master.Close()
		}
		return 0, err
	}
	g := <-mc
	if g.err != nil {
		return 0, g.err
	}
	pid, err := readPidFile(pidFile)
	if err != nil {
		g.master.Close()
		return 0, err
	}
	exits := make(chan gorunc.Exit, 1)
	m.reaper.watch(pid, since, func(e gorunc.Exit) { exits <- e })
	_, _, err = uc.WriteMsgUnix([]byte{'M'}, unix.UnixRights(int(g.master.Fd())), nil)
	g.master.Close()
	if err == nil {
		go hangup()
	}
	if err != nil {
		syscall.Kill(pid, syscall.SIGKILL)
		<-exits
		return 0, errHungUp
	}
	select {
	case e := <-exits:
		return e.Status, nil
	case <-ctx.Done():
		syscall.Kill(pid, syscall.SIGKILL)
		<-exits
		m.log.Debug("exec stream: daemon hung up; tty process killed", "pid", pid)
		return 0, errHungUp
	}
}

func execError(runErr error, logFile string, fallback error) error {
	err := runErr
	if err == nil {
		err = fallback
	}
	if msg := runc.LastLogError(logFile); msg != "" {
		err = fmt.Errorf("%w: %s", err, msg)
	}
	return fmt.Errorf("exec: %w", err)
}

// streamIO hands the received fds to runc as the process's stdio; the
// monitor's copies are closed once runc has started, so the daemon's read
// ends see EOF when the process (and its children) close theirs.
type streamIO struct {
	io   runc.IO
	once sync.Once
}

func (s *streamIO) Close() error          { return nil }
func (s *streamIO) Stdin() io.WriteCloser { return nil }
func (s *streamIO) Stdout() io.ReadCloser { return nil }
func (s *streamIO) Stderr() io.ReadCloser { return nil }

func (s *streamIO) Set(cmd *exec.Cmd) {
	if s.io.Stdin != nil {
		cmd.Stdin = s.io.Stdin
	}
	cmd.Stdout = s.io.Stdout
	cmd.Stderr = s.io.Stderr
}

func (s *streamIO) CloseAfterStart() error {
	s.once.Do(func() {
		for _, f := range []*os.File{s.io.Stdin, s.io.Stdout, s.io.Stderr} {
			if f != nil {
				f.Close()
			}
		}
	})
	return nil
}
