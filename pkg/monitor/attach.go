package monitor

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Attach (kubectl attach / crictl attach): the monitor already reads every
// container's output (the pipes, or the pty master of a tty container) to
// write the CRI log; an attached client gets a copy of what is read from
// then on, and what it types goes to the container's stdin pipe (kept open
// by the monitor when the container was created with stdin) or to the pty
// master. As for exec, the daemon makes the pipes and passes the monitor's
// ends over the socket.
//
// Wire, on one connection:
//
//	daemon → {"method":"Attach","params":AttachRequest}
//	monitor → "ok\n" or a response line with the error, then closes
//	daemon → 1 byte + fds [stdin?, stdout, stderr]
//	monitor → response line {"result":{"exit_code":N}} once the container
//	          exited and its output was passed on (the pipes are closed first)
//
// The daemon hanging up detaches the client. Output is never held back for
// a slow client: one that falls attachQueue reads behind is detached, so the
// log (and the container, whose pipe would fill) never waits on it.
const methodAttach = "Attach"

// attachQueue is how many reads (each up to DefaultMaxLogLine bytes) a
// client may lag behind.
const attachQueue = 32

// AttachRequest attaches to a running container.
type AttachRequest struct {
	ContainerID string `json:"container_id"`
	Stdin       bool   `json:"stdin"` // an fd for stdin is sent first
}

// AttachStdio is the monitor's ends of an attach's pipes: it writes the
// container's output to Stdout and Stderr (a tty container has only
// Stdout: Stderr is closed at once) and copies Stdin into the container.
type AttachStdio struct {
	Stdin, Stdout, Stderr *os.File // Stdin may be nil
}

// Attach attaches to a running container. The caller closes its copies of
// stdio's files once this returns; Wait on the result returns when the
// container exits (its exit code; the output pipes are at EOF by then), and
// Close (or cancelling ctx) detaches. Resize a tty with Client.Resize.
func (c *Client) Attach(ctx context.Context, req AttachRequest, stdio AttachStdio) (*ExecStream, error) {
	return c.openStream(ctx, methodAttach, req, func(conn *net.UnixConn, br *bufio.Reader) (*ExecStream, error) {
		if err := sendStdio(ctx, conn, methodAttach, req.Stdin, stdio.Stdin, stdio.Stdout, stdio.Stderr); err != nil {
			return nil, err
		}
		return &ExecStream{conn: conn, br: br}, nil
	})
}

// attachSet is the clients attached to one container.
type attachSet struct {
	n  atomic.Int32 // len(clients), read without the lock on every output read
	mu sync.Mutex
	// clients maps a client to its output queue; a queue is closed (under
	// mu) when the client is removed, and its writer then finishes.
	clients map[*attachClient]struct{}

	stdinOnce sync.Once // stdin_once: the container's stdin is closed once
}

type attachChunk struct {
	stderr bool
	b      []byte
}

type attachClient struct {
	q          chan attachChunk
	gone       chan struct{} // closed with q: the client is detached
	out, errw  *os.File
	writerDone chan struct{}
}

func (s *attachSet) add(cl *attachClient) {
	s.mu.Lock()
	if s.clients == nil {
		s.clients = map[*attachClient]struct{}{}
	}
	s.clients[cl] = struct{}{}
	s.n.Store(int32(len(s.clients)))
	s.mu.Unlock()
}

// remove detaches cl; its writer passes on what is queued, then closes the
// pipes. Removing twice is harmless.
func (s *attachSet) remove(cl *attachClient) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.clients[cl]; !ok {
		return
	}
	delete(s.clients, cl)
	s.n.Store(int32(len(s.clients)))
	close(cl.q)
	close(cl.gone)
}

// publish copies b to every client without waiting for any.
func (s *attachSet) publish(stderr bool, b []byte) {
	if s.n.Load() == 0 || len(b) == 0 {
		return
	}
	cp := append([]byte(nil), b...)
	s.mu.Lock()
	defer s.mu.Unlock()
	for cl := range s.clients {
		select {
		case cl.q <- attachChunk{stderr: stderr, b: cp}:
		default:
			// Too slow: detach it rather than hold up the container.
			delete(s.clients, cl)
			close(cl.q)
			close(cl.gone)
		}
	}
	s.n.Store(int32(len(s.clients)))
}

// tee returns r, with what is read from it also published to the attached
// clients: the copier that writes the log reads through it.
func (c *container) tee(r io.Reader, stream string) io.Reader {
	return &tapReader{r: r, s: &c.attach, stderr: stream == streamStderr}
}

type tapReader struct {
	r      io.Reader
	s      *attachSet
	stderr bool
}

func (t *tapReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.s.publish(t.stderr, p[:n])
	}
	return n, err
}

// writer passes the queue on to the client's pipes until it is closed, or
// a write fails (the daemon went away: the client is then removed).
func (s *attachSet) writer(cl *attachClient) {
	defer close(cl.writerDone)
	defer func() {
		cl.out.Close()
		if cl.errw != nil {
			cl.errw.Close()
		}
	}()
	failed := false
	for ch := range cl.q {
		if failed {
			continue // drain until remove closes the queue
		}
		w := cl.out
		if ch.stderr && cl.errw != nil {
			w = cl.errw
		}
		if _, err := w.Write(ch.b); err != nil {
			failed = true
			go s.remove(cl)
		}
	}
}

// closeStdin closes the container's stdin for stdin_once, once.
func (c *container) closeStdin() {
	c.attach.stdinOnce.Do(func() {
		if c.stdin != nil {
			c.stdin.Close()
		}
	})
}

// attach serves one Attach connection; it owns conn.
func (m *monitor) attach(ctx context.Context, conn net.Conn, raw json.RawMessage) {
	uc, _ := conn.(*net.UnixConn)
	fail := func(err error) { replyError(conn, err) }
	var req AttachRequest
	if err := json.Unmarshal(raw, &req); err != nil || uc == nil {
		fail(fmt.Errorf("bad Attach request: %v", err))
		return
	}
	c := m.lookup(req.ContainerID)
	if c == nil {
		fail(fmt.Errorf("attach to %s: %w", req.ContainerID, ErrNotFound))
		return
	}
	c.mu.Lock()
	created, exit := c.created, c.exit
	c.mu.Unlock()
	switch {
	case exit != nil:
		fail(fmt.Errorf("attach to %s: %w", req.ContainerID, ErrNotRunning))
		return
	case !created:
		fail(fmt.Errorf("attach to %s: still being created", req.ContainerID))
		return
	case c.console == nil && len(c.outputs) == 0:
		// A tty container whose pty master never arrived.
		fail(fmt.Errorf("attach to %s: the container has no output to attach to", req.ContainerID))
		return
	}
	if _, err := conn.Write([]byte("ok\n")); err != nil {
		return
	}
	files, err := recvStdio(uc, req.Stdin, "attach-stdio")
	if err != nil {
		m.log.Debug("attach: no stdio", "err", err)
		return
	}
	var stdin *os.File
	if req.Stdin {
		stdin, files = files[0], files[1:]
	}
	tty := c.console != nil
	cl := &attachClient{q: make(chan attachChunk, attachQueue), gone: make(chan struct{}), out: files[0], errw: files[1], writerDone: make(chan struct{})}
	if tty {
		files[1].Close() // a tty has one stream
		cl.errw = nil
	}
	c.attach.add(cl)
	go c.attach.writer(cl)
	log := m.log.With("container", c.id)
	log.Debug("attached", "stdin", req.Stdin, "tty", tty)

	var stdinDone chan struct{}
	if stdin != nil {
		stdinDone = make(chan struct{})
		var dst io.Writer
		switch {
		case tty:
			dst = c.console
		case c.stdin != nil:
			dst = c.stdin
		}
		go func() {
			defer close(stdinDone)
			defer stdin.Close()
			if dst == nil {
				io.Copy(io.Discard, stdin) // created without stdin: nothing takes it
				return
			}
			io.Copy(dst, stdin)
			// The client's stdin ended (EOF, or it detached): with
			// stdin_once the container sees EOF too, as in containerd
			// (a tty has no separate stdin to close).
			if c.stdinOnce && !tty {
				c.closeStdin()
				log.Debug("attach: stdin closed (stdin_once)")
			}
		}()
	}

	// The daemon sends nothing more: a read that returns means it hung up.
	hungUp := make(chan struct{})
	go func() {
		var b [1]byte
		conn.Read(b[:])
		close(hungUp)
	}()
	exited := false
	select {
	case <-c.exited:
		exited = true
	case <-hungUp:
	case <-cl.gone: // dropped as too slow, or its pipe broke
	case <-ctx.Done():
	}
	c.attach.remove(cl)
	if exited {
		// The output reached the client before the result does.
		select {
		case <-cl.writerDone:
		case <-hungUp:
		case <-time.After(requestTimeout):
		}
		if e := c.exitRecord(); e != nil {
			data, _ := json.Marshal(streamResult{ExitCode: e.ExitCode})
			conn.SetWriteDeadline(time.Now().Add(requestTimeout))
			json.NewEncoder(conn).Encode(response{Result: data})
		}
	}
	conn.Close() // ends the hang-up reader
	<-hungUp
	if stdinDone != nil {
		// The daemon closes its end of stdin when the session ends (a
		// daemon that died closed it too); what it wrote last still gets
		// through, but a session never outlives this for long.
		select {
		case <-stdinDone:
		case <-time.After(time.Second):
			stdin.SetReadDeadline(time.Now())
			<-stdinDone
		}
	}
	log.Debug("detached", "exited", exited)
}
