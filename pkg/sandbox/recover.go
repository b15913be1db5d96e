package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/store"
)

// Recover runs once at daemon start, before the CRI socket opens.
//
// Assumptions, in the spirit of containerd's restart.go:
//   - The store is the truth about which sandboxes exist. Anything on the
//     host that no record names (a pod dir, a pinned netns, a monitor) was
//     left by a crash between creating it and recording it, and is removed.
//   - A record in StateCreating belongs to a Run the previous daemon did not
//     finish; its client has long given up, so it is undone: CNI DEL (from
//     the record, or from libcni's cache when the result was never
//     recorded), netns, monitor and pod dir removed.
//   - The state dir is tmpfs. A Ready or NotReady record whose pod dir is
//     missing means the host restarted: nothing of the pod runs any more,
//     its netns is gone, but host-local still holds its IP. Such a pod is
//     made NotReady and its IP released through CNI DEL with the recorded
//     result, so the kubelet recreates it cleanly.
//   - Live pods keep running under their monitors, which never depended on
//     the daemon; the daemon re-attaches to a monitor lazily, on first use.
func (m *Manager) Recover(ctx context.Context) error {
	all, err := store.List[Sandbox](m.opts.DB, bucket)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, listed := range all {
		known[listed.ID] = true
		if err := m.recoverOne(ctx, listed.ID); err != nil {
			return err
		}
	}
	m.sweep(ctx, known)
	return nil
}

// recoverOne finishes or undoes what the previous daemon left of one pod,
// under the pod's lock like every other change to a record: nothing should
// race Recover, which runs before the CRI socket opens, but the contract
// costs one uncontended lock here and keeps every save of a record behind it.
func (m *Manager) recoverOne(ctx context.Context, id string) error {
	sb, unlock, err := m.lockAndLoad(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unlock()
	switch {
	case sb.State == StateCreating:
		m.log.Info("undoing interrupted sandbox creation", "sandbox", sb.ID)
		if err := m.undo(ctx, sb); err != nil {
			m.log.Error("undo interrupted sandbox", "sandbox", sb.ID, "error", err)
		}
	case !exists(sb.Dir):
		m.recoverFromReboot(ctx, sb)
	}
	return nil
}

// recoverFromReboot marks a pod whose volatile state vanished as not ready
// and gives its IP back.
func (m *Manager) recoverFromReboot(ctx context.Context, sb *Sandbox) {
	m.log.Warn("pod state is gone (host restarted?); marking the pod not ready", "sandbox", sb.ID, "dir", sb.Dir)
	sb.State = StateNotReady
	sb.PausePID = 0
	if !sb.HostNetwork() && !sb.NetworkTornDown {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := m.opts.Network.Teardown(cctx, m.podNetwork(sb), sb.Network)
		cancel()
		if err != nil {
			// Stop/Remove retry it; the pod stays NotReady meanwhile.
			m.log.Error("release IP of a pod lost in a restart", "sandbox", sb.ID, "error", err)
		} else {
			_ = m.opts.Network.RemoveNetNS(sb.NetNSPath)
			sb.NetworkTornDown = true
		}
	}
	if err := m.save(sb); err != nil {
		m.log.Error("record pod lost in a restart", "sandbox", sb.ID, "error", err)
	}
}

// sweep removes pod dirs, monitors and pinned netns files that no record
// names: what a crash between making them and recording them left.
func (m *Manager) sweep(ctx context.Context, known map[string]bool) {
	pods := filepath.Join(m.opts.StateDir, "pods")
	entries, _ := os.ReadDir(pods)
	for _, e := range entries {
		if known[e.Name()] || !e.IsDir() {
			continue
		}
		dir := filepath.Join(pods, e.Name())
		m.log.Info("removing an unrecorded pod dir", "dir", dir)
		if c, err := m.opts.Monitors.Connect(ctx, dir); err == nil {
			_ = c.Delete(ctx, e.Name())
			_ = c.Shutdown(ctx)
			c.Close()
		} else if pid := readPid(filepath.Join(dir, monitor.PidName)); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = unmount(filepath.Join(dir, "shm"))
		_ = unmount(filepath.Join(dir, "pause", "rootfs"))
		if err := os.RemoveAll(dir); err != nil {
			m.log.Warn("remove unrecorded pod dir", "dir", dir, "error", err)
		}
	}
	nsDir := filepath.Join(m.opts.StateDir, "netns")
	entries, _ = os.ReadDir(nsDir)
	for _, e := range entries {
		if known[e.Name()] {
			continue
		}
		path := filepath.Join(nsDir, e.Name())
		m.log.Info("removing an unrecorded netns", "path", path)
		if err := m.opts.Network.RemoveNetNS(path); err != nil {
			m.log.Warn("remove unrecorded netns", "path", path, "error", err)
		}
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}

func readPid(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}
