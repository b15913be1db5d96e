package sandbox

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/pod-shim/pod-shim/pkg/failpoint"
	"github.com/pod-shim/pod-shim/pkg/monitor"
)

// Stop stops the pod: its containers, then the pause container, then its
// network attachment. Stopping a stopped or unknown pod succeeds, as the
// kubelet expects.
func (m *Manager) Stop(ctx context.Context, idOrPrefix string) error {
	sb, unlock, err := m.lockAndLoad(ctx, idOrPrefix)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unlock()
	if err := m.stopContainers(ctx, sb); err != nil {
		return err
	}
	return m.stop(ctx, sb)
}

func (m *Manager) stop(ctx context.Context, sb *Sandbox) error {
	if m.opts.Hooks != nil && sb.State == StateReady {
		if err := m.opts.Hooks.StopPodSandbox(ctx, sb); err != nil {
			return fmt.Errorf("stop hook: %w", err)
		}
	}
	// Not ready from here on, even if a step below fails: the kubelet
	// retries Stop, and Stop retries both. Saved before either starts, so
	// a crash in between never leaves a Ready record of a pod whose
	// network is gone.
	if sb.State != StateNotReady {
		sb.State = StateNotReady
		if err := m.save(sb); err != nil {
			return err
		}
	}
	// Pause and the pod's network do not wait on each other (pause needs
	// no network to die; the netns lives while pause is in it): the CNI
	// DEL runs while the monitor kills pause and deletes it from runc.
	// teardownNetwork touches only the network's fields of sb, stopPause
	// only reads others.
	netErr := make(chan error, 1)
	go func() { netErr <- m.teardownNetwork(ctx, sb) }()
	pauseErr := m.stopPause(ctx, sb)
	if pauseErr == nil {
		failpoint.Hit("sandbox-stop-after-pause")
	}
	return errors.Join(pauseErr, <-netErr)
}

func (m *Manager) stopPause(ctx context.Context, sb *Sandbox) error {
	if _, err := monitor.ReadExit(sb.Dir, sb.ID); err == nil || sb.PausePID == 0 {
		return nil
	}
	c, err := m.podMonitor(ctx, sb)
	if err != nil {
		// The monitor is dead but pause may well run on: kill it through
		// runc directly. Remove deletes it the same way.
		// runc delete --force waits for the kill, as Wait does below.
		m.log.Warn("stop sandbox without monitor: killing pause through runc", "sandbox", sb.ID, "error", err)
		return m.deleteWithoutMonitor(ctx, sb)
	}
	if err := c.Kill(ctx, sb.ID, syscall.SIGKILL, false); err != nil {
		return fmt.Errorf("kill pause: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Wait(wctx, sb.ID); err != nil {
		return fmt.Errorf("wait for pause: %w", err)
	}
	return nil
}

func (m *Manager) teardownNetwork(ctx context.Context, sb *Sandbox) error {
	if sb.HostNetwork() || sb.NetworkTornDown {
		return nil
	}
	if sb.Network != nil {
		if err := m.opts.Network.Teardown(ctx, m.podNetwork(sb), sb.Network); err != nil {
			return fmt.Errorf("detach pod network: %w", err)
		}
	}
	if sb.NetNSPath != "" {
		if err := m.opts.Network.RemoveNetNS(sb.NetNSPath); err != nil {
			return fmt.Errorf("remove netns: %w", err)
		}
	}
	failpoint.Hit("sandbox-stop-after-teardown")
	sb.NetworkTornDown = true
	return m.save(sb)
}
