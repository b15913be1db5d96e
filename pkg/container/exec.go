package container

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/oci"
)

// ExecSync runs cmd in a running container and returns its output and exit
// code. A timeout kills the command and returns an error wrapping
// context.DeadlineExceeded.
func (m *Manager) ExecSync(ctx context.Context, idOrPrefix string, cmd []string, timeout time.Duration) (*ExecResult, error) {
	if len(cmd) == 0 {
		return nil, fmt.Errorf("cmd is empty: %w", ErrInvalid)
	}
	c, err := m.Get(idOrPrefix)
	if err != nil {
		return nil, err
	}
	if c.State != StateRunning {
		return nil, fmt.Errorf("container %s is %s: %w", c.ID, c.State, ErrState)
	}
	sb, err := m.sandboxes.Get(c.SandboxID)
	if err != nil {
		return nil, err
	}
	spec, err := oci.ReadBundle(c.Bundle)
	if err != nil {
		return nil, fmt.Errorf("read container spec: %w", err)
	}
	proc := *spec.Process
	proc.Args = cmd
	proc.Terminal = false
	mon, err := m.sandboxes.Monitor(ctx, sb)
	if err != nil {
		return nil, err
	}
	res, err := mon.Exec(ctx, monitor.ExecRequest{ContainerID: c.ID, Process: proc, Timeout: timeout})
	if err != nil {
		if errors.Is(err, monitor.ErrExecTimeout) {
			return nil, fmt.Errorf("command %q timed out after %s: %w", strings.Join(cmd, " "), timeout, context.DeadlineExceeded)
		}
		// The init exited between the state check above and the exec:
		// the same answer a moment later would have given.
		if errors.Is(err, monitor.ErrNotRunning) {
			return nil, fmt.Errorf("container %s is %s: %w", c.ID, StateExited, ErrState)
		}
		return nil, err
	}
	return &ExecResult{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: int32(res.ExitCode)}, nil
}

// ReopenLog makes the monitor reopen a running container's log file.
func (m *Manager) ReopenLog(ctx context.Context, idOrPrefix string) error {
	c, err := m.Get(idOrPrefix)
	if err != nil {
		return err
	}
	if c.State != StateRunning {
		return fmt.Errorf("container %s is %s: %w", c.ID, c.State, ErrState)
	}
	sb, err := m.sandboxes.Get(c.SandboxID)
	if err != nil {
		return err
	}
	mon, err := m.sandboxes.Monitor(ctx, sb)
	if err != nil {
		return err
	}
	return mon.ReopenLog(ctx, c.ID)
}
