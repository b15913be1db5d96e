package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pod-shim/pod-shim/pkg/failpoint"
	"github.com/pod-shim/pod-shim/pkg/lockmap"
	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/network"
	"github.com/pod-shim/pod-shim/pkg/oci"
	"github.com/pod-shim/pod-shim/pkg/runc"
	"github.com/pod-shim/pod-shim/pkg/store"
)

const bucket = "sandboxes"

// Options wire a Manager to the rest of the daemon.
type Options struct {
	DB           *store.DB
	Network      Network
	Images       Images // nil: every pod runs the built-in pause
	StateDir     string // e.g. /run/pod-shim
	SandboxImage string
	PauseBinary  string // built-in pause, used when SandboxImage is not in the store
	// Runtime and RuntimeRoot are the default handler's runtime when
	// Handlers is nil.
	Runtime      string
	RuntimeRoot  string
	CgroupDriver string
	Executable   string // re-exec target for monitors; "" = os.Executable()
	MaxLogLine   int    // longest CRI log record the monitors write; 0 = their default
	Logger       *slog.Logger
	// Direct, when set, lets the manager drive a pod's runtime without the
	// pod's monitor, to kill and delete the pause container of a pod whose
	// monitor is dead (killed, OOM): without it such a pod's pause would
	// outlive its removal. The pod's handler picks the runtime; Direct
	// itself serves only a pod whose handler the config no longer has.
	// nil skips direct deletes (tests without runc).
	Direct Runtime
	// Handlers are the RuntimeClass handlers, the one lookup from a pod's
	// handler to its runtime (see Runtime). nil has only the default
	// handler, on Runtime and RuntimeRoot.
	Handlers *runc.Handlers
	// Hooks are told of each pod's lifecycle (NRI); nil means none.
	Hooks Hooks
	// Monitors start and reconnect to pod monitors; nil means the real
	// monitor processes.
	Monitors Monitors
}

// Manager owns every sandbox of the node.
type Manager struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	names    map[string]string // reserved name → sandbox id
	monitors map[string]PodMonitor
	locks    lockmap.Map
	pending  map[string]*pendingRun // by reserved name: Runs whose client may retry
	// containers are the pods' app containers; see SetContainers.
	containers Containers

	pauseOnce   sync.Once
	builtinRoot string
	pauseErr    error
}

// New returns a Manager and rebuilds its name reservations from the store.
func New(opts Options) (*Manager, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Monitors == nil {
		opts.Monitors = processMonitors{}
	}
	if opts.Handlers == nil {
		opts.Handlers = runc.NewHandlers(runc.Handler{Binary: opts.Runtime, Root: opts.RuntimeRoot}, nil)
	}
	m := &Manager{
		opts:     opts,
		log:      opts.Logger,
		names:    map[string]string{},
		monitors: map[string]PodMonitor{},
		pending:  map[string]*pendingRun{},
	}
	all, err := store.List[Sandbox](opts.DB, bucket)
	if err != nil {
		return nil, fmt.Errorf("load sandboxes: %w", err)
	}
	for _, sb := range all {
		m.names[reservedName(sb.Config)] = sb.ID
	}
	return m, nil
}

// reservedName is the kubelet's identity of a sandbox: a second Run with the
// same one while the first exists is a kubelet bug or a retry.
func reservedName(c Config) string {
	return fmt.Sprintf("%s_%s_%s_%d", c.Name, c.Namespace, c.UID, c.Attempt)
}

// Lock holds sandbox id's lock for callers (the container manager) that must
// not race with Stop or Remove of the same pod.
func (m *Manager) Lock(id string) func() { return m.locks.Lock(id) }

// Get returns the sandbox with this id or unique id prefix.
func (m *Manager) Get(idOrPrefix string) (*Sandbox, error) {
	var sb Sandbox
	if err := m.opts.DB.GetByPrefix(bucket, idOrPrefix, &sb); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%q: %w", idOrPrefix, ErrNotFound)
		}
		return nil, err
	}
	m.refreshState(&sb)
	return &sb, nil
}

// refreshState reports a pod whose pause process has died as not ready, so
// the kubelet recreates it. The check is a stat of the exit file the monitor
// writes: no call to the monitor on this path.
func (m *Manager) refreshState(sb *Sandbox) {
	if sb.State != StateReady {
		return
	}
	if _, err := monitor.ReadExit(sb.Dir, sb.ID); err == nil {
		sb.State = StateNotReady
	}
}

// List returns the sandboxes matching f, oldest first.
func (m *Manager) List(f Filter) ([]*Sandbox, error) {
	all, err := store.List[Sandbox](m.opts.DB, bucket)
	if err != nil {
		return nil, err
	}
	var id string
	if f.ID != "" {
		if id, err = m.opts.DB.Resolve(bucket, f.ID); err != nil {
			return nil, nil // an unknown id filter matches nothing
		}
	}
	out := all[:0]
	for _, sb := range all {
		if sb.State == StateCreating {
			continue
		}
		m.refreshState(sb)
		if id != "" && sb.ID != id {
			continue
		}
		if f.State != nil && sb.State != *f.State {
			continue
		}
		if !MatchLabels(sb.Config.Labels, f.Labels) {
			continue
		}
		out = append(out, sb)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// MatchLabels says whether have carries every label of want, the CRI
// label-selector rule for pods and containers alike.
func MatchLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

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

func (m *Manager) save(sb *Sandbox) error {
	return m.opts.DB.Put(bucket, sb.ID, sb)
}

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

// lockAndLoad is the first half of the records contract: lock the ID, then
// load. A record loaded before taking the lock may be a pod that a
// concurrent Remove has deleted meanwhile, or a Run has not finished
// filling in; saving it would bring the one back and lose the other's
// network result. The caller decides, saves and unlocks.
func (m *Manager) lockAndLoad(ctx context.Context, idOrPrefix string) (*Sandbox, func(), error) {
	id, err := m.opts.DB.Resolve(bucket, idOrPrefix)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, fmt.Errorf("%q: %w", idOrPrefix, ErrNotFound)
	}
	if err != nil {
		return nil, nil, err
	}
	unlock, err := m.lock(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	sb, err := m.Get(id)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return sb, unlock, nil
}

// lock holds id's lock, or gives up when ctx ends first: a Stop queued
// behind a slow Run must not outlive its client.
func (m *Manager) lock(ctx context.Context, id string) (func(), error) {
	return m.locks.LockContext(ctx, id)
}

func (m *Manager) stop(ctx context.Context, sb *Sandbox) error {
	if m.opts.Hooks != nil && sb.State == StateReady {
		if err := m.opts.Hooks.StopPodSandbox(ctx, sb); err != nil {
			return fmt.Errorf("stop hook: %w", err)
		}
	}
	if err := m.stopPause(ctx, sb); err != nil {
		return err
	}
	failpoint.Hit("sandbox-stop-after-pause")
	// Not ready from here on, even if the network part fails: the kubelet
	// retries Stop, and Stop retries the DEL.
	if sb.State != StateNotReady {
		sb.State = StateNotReady
		if err := m.save(sb); err != nil {
			return err
		}
	}
	if err := m.teardownNetwork(ctx, sb); err != nil {
		return err
	}
	return nil
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
	// runc removed pause's cgroup on delete, unless its state was lost
	// (host restart) or the runtime is gone.
	oci.RemoveCgroup(m.opts.CgroupDriver, sb.CgroupPath)
	m.removePodCgroups(sb)
	return nil
}

func unmount(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmount %s: %w", path, err)
}

func (m *Manager) podNetwork(sb *Sandbox) network.Pod {
	return network.Pod{
		ID:           sb.ID,
		Name:         sb.Config.Name,
		Namespace:    sb.Config.Namespace,
		UID:          sb.Config.UID,
		NetNS:        sb.NetNSPath,
		PortMappings: sb.Config.PortMappings,
		Annotations:  sb.Config.Annotations,
		CgroupParent: sb.Config.CgroupParent,
		DNS:          podDNS(sb.Config.DNS),
	}
}

// podDNS is the pod's DNS config for the "dns" CNI capability.
func podDNS(d *DNS) *network.DNS {
	if d == nil {
		return nil
	}
	return &network.DNS{Servers: d.Servers, Searches: d.Searches, Options: d.Options}
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
// directly. A container runc does not know is already deleted.
//
// Deprecated: a container's runtime is its pod's: use ForceDeleteIn.
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
