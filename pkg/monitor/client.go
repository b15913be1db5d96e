package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// Client talks to one pod's monitor. Every call opens its own connection, so
// a Client holds no socket between calls, is safe for concurrent use, and a
// call's context ends it on both sides (the monitor cancels the handler when
// the connection closes).
type Client struct {
	dir    string
	sock   string
	pid    int
	closed atomic.Bool
}

// Pid is the monitor's process id.
func (c *Client) Pid() int { return c.pid }

// Dir is the pod state dir the monitor serves.
func (c *Client) Dir() string { return c.dir }

// Close forgets the monitor; the monitor and its containers keep running.
func (c *Client) Close() error {
	c.closed.Store(true)
	return nil
}

// Create creates a container (and starts it with req.Start) and returns its
// init's pid. The log file exists when it returns.
func (c *Client) Create(ctx context.Context, req CreateRequest) (int, error) {
	var r pidResult
	if err := c.call(ctx, "Create", req, &r); err != nil {
		return 0, err
	}
	return r.Pid, nil
}

// Start starts a created container.
func (c *Client) Start(ctx context.Context, id string) error {
	return c.call(ctx, "Start", idParams{ID: id}, nil)
}

// Kill signals the container's init, or all its processes with all. A
// container that is absent or no longer running is not an error.
func (c *Client) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	return c.call(ctx, "Kill", killParams{ID: id, Signal: int(sig), All: all}, nil)
}

// Wait blocks until the container's init has exited and its output is in
// the log. The monitor then deletes it from the runtime by itself; Delete
// waits for that. Cancelling ctx ends the wait only, not the container.
func (c *Client) Wait(ctx context.Context, id string) (*Exit, error) {
	var e Exit
	if err := c.call(ctx, "Wait", idParams{ID: id}, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// Delete force-deletes the container in the runtime and drops the monitor's
// bookkeeping. It is idempotent and keeps the exit file (see RemoveExit).
func (c *Client) Delete(ctx context.Context, id string) error {
	return c.call(ctx, "Delete", idParams{ID: id}, nil)
}

// Exec runs a process in a running container and returns its output and exit
// code. The error wraps ErrExecTimeout when req.Timeout ran out; the process
// was then killed.
func (c *Client) Exec(ctx context.Context, req ExecRequest) (*ExecResult, error) {
	var r ExecResult
	if err := c.call(ctx, "Exec", req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// ReopenLog makes the monitor reopen the container's log file at its path,
// after the kubelet renamed the old one. It wraps ErrNotRunning when the
// container has exited.
func (c *Client) ReopenLog(ctx context.Context, id string) error {
	return c.call(ctx, "ReopenLog", idParams{ID: id}, nil)
}

// Resize sets the window size of a tty container's terminal (columns,
// rows), as an attach's client resizes its window. It fails for a
// container without a tty.
func (c *Client) Resize(ctx context.Context, id string, width, height uint16) error {
	return c.call(ctx, "Resize", resizeParams{ID: id, Width: width, Height: height}, nil)
}

// Shutdown kills and deletes the containers left in the pod and makes the
// monitor exit; it removes its socket first.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.call(ctx, "Shutdown", nil, nil)
}

// Wire format: one JSON request and one JSON response per connection.
type request struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params,omitempty"`
}

type response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	Code   string          `json:"code,omitempty"`
}

type idParams struct {
	ID string `json:"id"`
}

type killParams struct {
	ID     string `json:"id"`
	Signal int    `json:"signal"`
	All    bool   `json:"all"`
}

type resizeParams struct {
	ID     string `json:"id"`
	Width  uint16 `json:"width"`
	Height uint16 `json:"height"`
}

type pidResult struct {
	Pid int `json:"pid"`
}

type pingResult struct {
	Pid int `json:"pid"`
}

// Error codes carry sentinel errors across the socket.
var codes = map[string]error{
	"not_found":    ErrNotFound,
	"not_running":  ErrNotRunning,
	"exec_timeout": ErrExecTimeout,
}

func codeOf(err error) string {
	for code, sentinel := range codes {
		if errors.Is(err, sentinel) {
			return code
		}
	}
	return ""
}

// remoteError is an error returned by the monitor: its text, and the
// sentinel its code stands for.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

func (c *Client) call(ctx context.Context, method string, params, result any) error {
	if c.closed.Load() {
		return fmt.Errorf("monitor %s: client closed", method)
	}
	req := request{Method: method}
	if params != nil {
		p, err := json.Marshal(params)
		if err != nil {
			return fmt.Errorf("monitor %s: %w", method, err)
		}
		req.Params = p
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.sock)
	if err != nil {
		return fmt.Errorf("monitor %s: %w", method, err)
	}
	defer conn.Close()
	// Closing the deadline on cancel unblocks the read; the monitor sees the
	// connection go and cancels its side.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return fmt.Errorf("monitor %s: %w", method, ctxErr(ctx, err))
	}
	var resp response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return fmt.Errorf("monitor %s: %w", method, ctxErr(ctx, err))
	}
	if resp.Error != "" {
		return &remoteError{msg: "monitor " + method + ": " + resp.Error, sentinel: codes[resp.Code]}
	}
	if result != nil && len(resp.Result) > 0 {
		if err := json.Unmarshal(resp.Result, result); err != nil {
			return fmt.Errorf("monitor %s: decode result: %w", method, err)
		}
	}
	return nil
}

// ctxErr prefers the context's error over the i/o timeout it caused.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	// The connection's deadline is the context's: it can fire a moment
	// before the context reports itself done.
	if deadline, ok := ctx.Deadline(); ok && !time.Now().Before(deadline) {
		return context.DeadlineExceeded
	}
	return err
}
