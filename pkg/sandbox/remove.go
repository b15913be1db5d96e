package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pod-shim/pod-shim/pkg/failpoint"
	"github.com/pod-shim/pod-shim/pkg/oci"
)

// Remove removes the pod's containers, stops the pod if needed and deletes
// everything it owns. Removing an unknown pod succeeds.
func (m *Manager) Remove(ctx context.Context, idOrPrefix string) error {
	sb, unlock, err := m.lockAndLoad(ctx, idOrPrefix)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unlock()
	if err := m.removeContainers(ctx, sb); err != nil {
		return err
	}
	if err := m.stop(ctx, sb); err != nil {
		return err
	}
	if err := m.release(ctx, sb); err != nil {
		return err
	}
	failpoint.Hit("sandbox-remove-after-release")
	if m.opts.Hooks != nil {
		if err := m.opts.Hooks.RemovePodSandbox(ctx, sb); err != nil {
			m.log.Warn("remove hook", "sandbox", sb.ID, "error", err)
		}
	}
	if err := m.opts.DB.Delete(bucket, sb.ID); err != nil {
		return err
	}
	m.mu.Lock()
	if m.names[reservedName(sb.Config)] == sb.ID {
		delete(m.names, reservedName(sb.Config))
	}
	m.mu.Unlock()
	return nil
}

// release frees the host resources of a stopped pod: pause container,
// monitor, mounts and the pod dir.
func (m *Manager) release(ctx context.Context, sb *Sandbox) error {
	if c, err := m.podMonitor(ctx, sb); err == nil {
		if err := c.Delete(ctx, sb.ID); err != nil {
			return fmt.Errorf("delete pause: %w", err)
		}
		if err := c.Shutdown(ctx); err != nil {
			m.log.Warn("monitor shutdown", "sandbox", sb.ID, "error", err)
		}
	} else if err := m.deleteWithoutMonitor(ctx, sb); err != nil {
		return err
	}
	m.dropMonitor(sb.ID)
	if err := m.removePodDir(sb); err != nil {
		return err
	}
	// runc removed pause's cgroup on delete, unless its state was lost
	// (host restart) or the runtime is gone.
	oci.RemoveCgroup(m.opts.CgroupDriver, sb.CgroupPath)
	m.removePodCgroups(sb)
	return nil
}

// removePodDir removes the pod's dir and what is mounted in it: the pause
// rootfs, /dev/shm. It stops at the first failure: removing a dir with a
// mount still in it would reach into what is mounted.
func (m *Manager) removePodDir(sb *Sandbox) error {
	if sb.PauseImage != "" && m.opts.Images != nil {
		if err := m.opts.Images.RemoveRootfs(sb.ID, filepath.Join(sb.Dir, "pause", "rootfs")); err != nil {
			return fmt.Errorf("remove pause rootfs: %w", err)
		}
	}
	if err := unmount(sb.ShmPath()); err != nil {
		return err
	}
	if err := os.RemoveAll(sb.Dir); err != nil {
		return fmt.Errorf("remove pod dir: %w", err)
	}
	return nil
}
