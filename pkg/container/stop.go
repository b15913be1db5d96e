package container

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// Stop stops a running container: its stop signal, then SIGKILL after
// timeout (0 kills at once). Stopping a stopped or unknown container
// succeeds; one still being created is waited for.
func (m *Manager) Stop(ctx context.Context, idOrPrefix string, timeout time.Duration) error {
	c, unlock, err := m.lockRecord(ctx, idOrPrefix)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unlock()
	return m.stop(ctx, c, timeout)
}

// stop stops c, which the caller loaded under its lock, and records its
// exit in c and the store.
func (m *Manager) stop(ctx context.Context, c *Container, timeout time.Duration) error {
	if err := m.settle(ctx, c); err != nil {
		return err
	}
	if c.State != StateRunning {
		return nil
	}
	sb, err := m.sandboxes.Get(c.SandboxID)
	if err != nil {
		return err
	}
	mon, err := m.sandboxes.Monitor(ctx, sb)
	if err != nil {
		// The pod's monitor is dead, so no exit will be recorded: kill
		// the container through runc and record the exit here.
		m.log.Warn("stop container without its pod's monitor: killing it through runc", "container", c.ID, "error", err)
		if err := m.forceDelete(ctx, c); err != nil {
			return fmt.Errorf("kill container without monitor: %w", err)
		}
		c.State = StateExited
		c.ExitCode = 137
		c.FinishedAt = time.Now()
		c.Reason = "Error"
		c.Message = "killed through runc: the pod's monitor was gone"
		return m.save(c)
	}
	if timeout > 0 {
		if err := mon.Kill(ctx, c.ID, parseSignal(c.StopSignal), false); err != nil {
			return fmt.Errorf("signal container: %w", err)
		}
		wctx, cancel := context.WithTimeout(ctx, timeout)
		_, err := mon.Wait(wctx, c.ID)
		cancel()
		if err == nil {
			return m.settle(ctx, c)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if err := mon.Kill(ctx, c.ID, syscall.SIGKILL, true); err != nil {
		return fmt.Errorf("kill container: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := mon.Wait(wctx, c.ID); err != nil {
		return fmt.Errorf("wait for container exit: %w", err)
	}
	return m.settle(ctx, c)
}

// parseSignal reads "SIGTERM", "TERM", "15" or a CRI enum name such as
// "SIGRTMINPLUS1"; anything else is SIGTERM.
func parseSignal(s string) syscall.Signal {
	if sig, err := signalNumber(s); err == nil {
		return sig
	}
	return syscall.SIGTERM
}
