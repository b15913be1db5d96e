package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/pod-shim/pod-shim/pkg/lockmap"
	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/network"
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

func (m *Manager) save(sb *Sandbox) error {
	return m.opts.DB.Put(bucket, sb.ID, sb)
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

// netnsPath is where a sandbox's network namespace is pinned.
func (m *Manager) netnsPath(id string) string {
	return filepath.Join(m.opts.StateDir, "netns", id)
}
