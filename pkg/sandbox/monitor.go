package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/runc"
)

// Monitor returns the client of the pod's monitor, reconnecting after a
// daemon restart, for the container manager, which needs all of its calls.
func (m *Manager) Monitor(ctx context.Context, sb *Sandbox) (*monitor.Client, error) {
	pm, err := m.podMonitor(ctx, sb)
	if err != nil {
		return nil, err
	}
	c, ok := pm.(*monitor.Client)
	if !ok {
		return nil, fmt.Errorf("monitor of sandbox %s is a %T, not a monitor process", sb.ID, pm)
	}
	return c, nil
}

// podMonitor returns the pod's monitor, reconnecting after a daemon restart.
func (m *Manager) podMonitor(ctx context.Context, sb *Sandbox) (PodMonitor, error) {
	m.mu.Lock()
	c := m.monitors[sb.ID]
	m.mu.Unlock()
	if c != nil {
		if monitorAlive(c.Pid(), sb.Dir) {
			return c, nil
		}
		// Killed behind our back (OOM, an admin): callers fall back to
		// runc directly rather than failing on every call to it.
		m.dropMonitor(sb.ID)
		return nil, fmt.Errorf("monitor of sandbox %s (pid %d) is gone", sb.ID, c.Pid())
	}
	c, err := m.opts.Monitors.Connect(ctx, sb.Dir)
	if err != nil {
		return nil, fmt.Errorf("monitor of sandbox %s: %w", sb.ID, err)
	}
	m.mu.Lock()
	if prev := m.monitors[sb.ID]; prev != nil {
		m.mu.Unlock()
		c.Close()
		return prev, nil
	}
	m.monitors[sb.ID] = c
	m.mu.Unlock()
	return c, nil
}

func (m *Manager) dropMonitor(id string) {
	m.mu.Lock()
	c := m.monitors[id]
	delete(m.monitors, id)
	m.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// deleteWithoutMonitor cleans up after a pod whose monitor does not answer:
// a monitor process that still exists (hung) is killed, and the pause
// container is deleted through runc directly.
func (m *Manager) deleteWithoutMonitor(ctx context.Context, sb *Sandbox) error {
	if pid := readPid(filepath.Join(sb.Dir, monitor.PidName)); pid > 0 {
		// The pid file may be stale and the pid reused: only a process
		// that names this pod's dir is the pod's monitor.
		if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(cmdline), sb.Dir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	direct := m.directOf(sb)
	if direct == nil {
		return nil
	}
	if err := direct.Delete(ctx, sb.ID, true); err != nil && !errors.Is(err, runc.ErrNotFound) {
		return fmt.Errorf("delete pause without its monitor: %w", err)
	}
	return nil
}

// ForceDeleteIn kills and deletes container id of pod sb through the pod's
// runtime directly, for the container manager when the pod's monitor is
// gone. A container the runtime does not know is already deleted; without
// Direct (tests without runc) nothing is deleted.
func (m *Manager) ForceDeleteIn(ctx context.Context, sb *Sandbox, id string) error {
	rt := m.directOf(sb)
	if rt == nil {
		return nil
	}
	if err := rt.Delete(ctx, id, true); err != nil && !errors.Is(err, runc.ErrNotFound) {
		return err
	}
	return nil
}

// ForceDelete kills and deletes a container through the default runtime
// directly, for a container whose pod's record is gone (otherwise the pod's
// runtime is the one: ForceDeleteIn). A container runc does not know is
// already deleted.
func (m *Manager) ForceDelete(ctx context.Context, id string) error {
	if m.opts.Direct == nil {
		return nil
	}
	if err := m.opts.Direct.Delete(ctx, id, true); err != nil && !errors.Is(err, runc.ErrNotFound) {
		return err
	}
	return nil
}

// monitorAlive says whether pid is still the monitor of the pod in dir: the
// check is one read of /proc, and the cmdline guards against a reused pid.
// An unknown pid (0) counts as alive: the next call finds out.
func monitorAlive(pid int, dir string) bool {
	if pid <= 0 {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	if i := strings.LastIndexByte(string(stat), ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(cmdline), dir)
}
