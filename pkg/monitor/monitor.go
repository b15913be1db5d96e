// Package monitor is the pod's shim: one small process per pod that is the
// parent (subreaper) of every container of the pod, owns their stdio, writes
// their CRI log files and exit files, runs execs, and outlives restarts of
// the daemon. The daemon starts it with Start, re-attaches with Connect and
// talks to it through Client over <Dir>/rpc/monitor.sock (root only).
//
// The monitor side (Main) is kept light on purpose: 110 of them run on a full
// node, so it uses a one-request-per-connection JSON protocol over a unix
// socket instead of gRPC or net/rpc (which pulls in net/http).
package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Errors that cross the socket keep their identity: test with errors.Is.
var (
	// ErrExecTimeout is wrapped by Exec when the process outlived its Timeout.
	ErrExecTimeout = errors.New("exec timed out")
	// ErrNotFound is wrapped when the monitor does not know the container.
	ErrNotFound = errors.New("container not found")
	// ErrNotRunning is wrapped when a container's process has exited.
	ErrNotRunning = errors.New("container not running")
)

// File names inside the pod's state dir.
const (
	SocketName = "monitor.sock"
	socketDir  = "rpc" // 0700, holding only the 0600 socket
	PidName    = "monitor.pid"
	LogName    = "monitor.log"
	exitsDir   = "exits"
	runDir     = "run" // pid files and runc logs of containers and execs
)

// maxProcsEnv tells the monitor that GOMAXPROCS in its environment was set
// by Start, for the monitor alone.
const maxProcsEnv = "POD_SHIM_MONITOR_GOMAXPROCS"

// startTimeout bounds Start when the caller's context has no deadline.
const startTimeout = 10 * time.Second

// StartOptions says which pod a monitor serves and how it runs containers.
type StartOptions struct {
	SandboxID   string
	Dir         string // pod state dir: monitor.sock, monitor.pid, monitor.log, exits/ live here
	Runtime     string // runc binary path
	RuntimeRoot string // runc --root
	// SystemdCgroup runs the runtime with --systemd-cgroup (the handler's
	// "systemd_cgroup" option).
	SystemdCgroup bool
	Executable    string // binary to re-exec as `<Executable> monitor ...`; "" = os.Executable()
	// MaxLogLine is the longest CRI log record (max_container_log_line_size);
	// 0 means DefaultMaxLogLine.
	MaxLogLine int
	Logger     *slog.Logger
}

// CreateRequest describes one container to create.
type CreateRequest struct {
	ID        string // container id
	Bundle    string // dir with config.json
	LogPath   string // CRI log file; "" discards output. It exists when Create returns.
	Stdin     bool   // keep a stdin pipe open for a later attach; false gives /dev/null
	StdinOnce bool
	// Terminal gives the container a pty (its spec's process.terminal must
	// be set too): the monitor receives the master through a console socket,
	// copies its output into the log as stdout, as containerd does, and keeps
	// it for attach and resize. Stdin then only says an attach may write.
	Terminal bool
	Start    bool // true: `runc run --detach` (create and start in one spawn); false: `runc create`
	// Cgroup is the spec's linux.cgroupsPath: the container's own, new
	// cgroup, watched for OOM kills even when the init is gone before the
	// monitor could read /proc/<pid>/cgroup.
	Cgroup string
}

// ExecRequest is one process to run in a running container.
type ExecRequest struct {
	ContainerID string
	Process     specs.Process
	Timeout     time.Duration // 0 = none
}

// ExecResult is an exec's captured output (each capped at MaxExecOutput) and
// exit code.
type ExecResult struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
}

// MaxExecOutput caps each of an exec's streams so a chatty command cannot
// blow up the monitor's memory; the rest is read and dropped.
const MaxExecOutput = 16 << 20

// Exit is how a container's init ended, as recorded in <Dir>/exits/<id>.json.
type Exit struct {
	Pid       int       `json:"pid"`
	ExitCode  int       `json:"exit_code"` // signal-killed → 128+signo
	ExitedAt  time.Time `json:"exited_at"`
	OOMKilled bool      `json:"oom_killed"` // best effort: the memory cgroup's oom_kill count grew
}

// ReadExit reads a container's exit file. The error wraps os.ErrNotExist when
// the container has not exited (or was never run by this pod's monitor). It is
// a plain file read and never talks to the monitor.
func ReadExit(dir, id string) (*Exit, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(exitPath(dir, id))
	if err != nil {
		return nil, fmt.Errorf("read exit of %s: %w", id, err)
	}
	var e Exit
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("decode exit of %s: %w", id, err)
	}
	return &e, nil
}

// RemoveExit deletes a container's exit file; a missing file is not an error.
func RemoveExit(dir, id string) error {
	if err := validID(id); err != nil {
		return err
	}
	if err := os.Remove(exitPath(dir, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove exit of %s: %w", id, err)
	}
	return nil
}

func exitPath(dir, id string) string { return filepath.Join(dir, exitsDir, id+".json") }

// writeExit replaces the exit file atomically so a reader never sees half a
// record. No fsync: the state dir is on tmpfs and does not survive a reboot.
func writeExit(dir, id string, e *Exit) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	final := exitPath(dir, id)
	tmp := filepath.Join(dir, exitsDir, "."+id+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write exit of %s: %w", id, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write exit of %s: %w", id, err)
	}
	return nil
}

// validID keeps ids usable as file names under the state dir.
func validID(id string) error {
	if id == "" || len(id) > 128 || strings.ContainsAny(id, "/\\\x00") || id == "." || id == ".." {
		return fmt.Errorf("invalid container id %q", id)
	}
	return nil
}

// Start spawns the pod's monitor in a new session (so the daemon's death or
// its process group's signals do not reach it), waits until it serves its
// socket and returns a client for it. The monitor's stdin is /dev/null and its
// stdout/stderr go to <Dir>/monitor.log, so a Go panic is not lost. A
// goroutine reaps the monitor when it exits, so the daemon keeps no zombie.
func Start(ctx context.Context, opts StartOptions) (*Client, error) {
	if opts.SandboxID == "" || opts.Dir == "" || opts.Runtime == "" || opts.RuntimeRoot == "" {
		return nil, errors.New("start monitor: SandboxID, Dir, Runtime and RuntimeRoot are required")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("sandbox", opts.SandboxID)
	exe := opts.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("start monitor: find own executable: %w", err)
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	if err := os.MkdirAll(opts.Dir, 0o711); err != nil {
		return nil, fmt.Errorf("start monitor: %w", err)
	}
	logFile, err := os.OpenFile(filepath.Join(opts.Dir, LogName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("start monitor: %w", err)
	}
	defer logFile.Close()
	// The monitor reports readiness (or why it failed) on this pipe: no
	// polling of the socket, and an early death shows up as EOF.
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start monitor: %w", err)
	}
	defer readyR.Close()

	cmd := exec.Command(exe, "monitor",
		"--id", opts.SandboxID, "--dir", opts.Dir,
		"--runtime", opts.Runtime, "--runtime-root", opts.RuntimeRoot,
		"--ready-fd", "3")
	if opts.SystemdCgroup {
		cmd.Args = append(cmd.Args, "--systemd-cgroup")
	}
	if opts.MaxLogLine != 0 {
		cmd.Args = append(cmd.Args, "--max-log-line", strconv.Itoa(opts.MaxLogLine))
	}
	cmd.Dir = "/" // pin no directory the daemon might want to unmount
	if os.Getenv("GOMAXPROCS") == "" {
		// One P from the first instruction on: set only in Main, the
		// runtime's init has already started threads for a second P, and
		// every thread's stacks stay with the monitor for its whole life.
		cmd.Env = append(os.Environ(), "GOMAXPROCS=1", maxProcsEnv+"=1")
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	begin := time.Now()
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return nil, fmt.Errorf("start monitor: %w", err)
	}
	pid := cmd.Process.Pid
	go func() {
		err := cmd.Wait()
		logger.Info("monitor exited", "pid", pid, "err", err)
	}()

	deadline, _ := ctx.Deadline()
	readyR.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { readyR.SetReadDeadline(time.Now()) })
	msg, err := io.ReadAll(io.LimitReader(readyR, 4096))
	stop()
	if err != nil || string(msg) != "ok" {
		cmd.Process.Kill()
		if err != nil {
			return nil, fmt.Errorf("start monitor for %s: waiting for readiness: %w", opts.SandboxID, err)
		}
		if len(msg) == 0 {
			msg = []byte("exited before it was ready; see " + filepath.Join(opts.Dir, LogName))
		}
		return nil, fmt.Errorf("start monitor for %s: %s", opts.SandboxID, msg)
	}
	logger.Debug("monitor started", "pid", pid, "took", time.Since(begin))
	return &Client{dir: opts.Dir, sock: SocketPath(opts.Dir), pid: pid}, nil
}

// SocketPath is where the monitor of the pod dir dir listens.
func SocketPath(dir string) string { return filepath.Join(dir, socketDir, SocketName) }

// Connect re-attaches to the monitor serving dir, typically after a daemon
// restart. It fails when no monitor answers there.
func Connect(ctx context.Context, dir string) (*Client, error) {
	c := &Client{dir: dir, sock: SocketPath(dir)}
	if _, err := os.Lstat(c.sock); errors.Is(err, os.ErrNotExist) {
		// A monitor started by an older daemon listens in the pod dir.
		if _, err := os.Lstat(filepath.Join(dir, SocketName)); err == nil {
			c.sock = filepath.Join(dir, SocketName)
		}
	}
	var r pingResult
	if err := c.call(ctx, "Ping", nil, &r); err != nil {
		return nil, fmt.Errorf("connect to monitor in %s: %w", dir, err)
	}
	c.pid = r.Pid
	return c, nil
}
