package container

import (
	"context"
	"fmt"
	"time"

	"github.com/pod-shim/pod-shim/pkg/failpoint"
	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/oci"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// Start runs a created container. A container that cannot start is left
// exited with exit code 128 and reason StartError, as the kubelet expects.
func (m *Manager) Start(ctx context.Context, idOrPrefix string) error {
	c, unlock, err := m.lockRecord(ctx, idOrPrefix)
	if err != nil {
		return err
	}
	defer unlock()
	if c.State != StateCreated {
		return fmt.Errorf("container %s is %s, not created: %w", c.ID, c.State, ErrState)
	}
	sb, err := m.sandboxes.Get(c.SandboxID)
	if err != nil {
		return err
	}
	if sb.State != sandbox.StateReady {
		return fmt.Errorf("sandbox %s: %w", sb.ID, sandbox.ErrNotReady)
	}
	mon, err := m.sandboxes.Monitor(ctx, sb)
	if err != nil {
		return err
	}
	// Intent first: a crash while runc runs leaves a record that recovery
	// resolves by asking runc, instead of a running container recorded as
	// merely created.
	c.State = StateStarting
	if err := m.save(c); err != nil {
		return err
	}
	failpoint.Hit("container-start-before-run")
	if m.opts.Hooks != nil {
		if err := m.opts.Hooks.StartContainer(ctx, c); err != nil {
			c.State = StateCreated
			if serr := m.save(c); serr != nil {
				return serr
			}
			return fmt.Errorf("start hook: %w", err)
		}
	}
	pid, err := mon.Create(ctx, monitor.CreateRequest{
		ID:        c.ID,
		Bundle:    c.Bundle,
		LogPath:   c.LogPath,
		Stdin:     c.Config.Stdin,
		StdinOnce: c.Config.StdinOnce,
		Terminal:  c.Config.Tty,
		Start:     true,
		Cgroup:    oci.CgroupsPath(m.opts.CgroupDriver, sb.Config.CgroupParent, c.ID),
	})
	if err != nil {
		now := time.Now()
		c.State = StateExited
		c.StartedAt = now
		c.FinishedAt = now
		c.ExitCode = 128
		c.Reason = "StartError"
		c.Message = err.Error()
		_ = mon.Delete(context.WithoutCancel(ctx), c.ID)
		if serr := m.save(c); serr != nil {
			return serr
		}
		return fmt.Errorf("start container %s: %w", c.ID, err)
	}
	failpoint.Hit("container-start-after-run")
	c.Pid = pid
	c.State = StateRunning
	c.StartedAt = time.Now()
	if err := m.save(c); err != nil {
		return err
	}
	if m.opts.Hooks != nil {
		m.opts.Hooks.PostStartContainer(ctx, c)
	}
	return nil
}
