package container

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/pod-shim/pod-shim/pkg/image"
	"github.com/pod-shim/pod-shim/pkg/lockmap"
	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/runc"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
	"github.com/pod-shim/pod-shim/pkg/store"
)

const bucket = "containers"

// Options wire a Manager to the rest of the daemon.
type Options struct {
	DB           *store.DB
	Sandboxes    *sandbox.Manager
	Images       *image.Store
	StateDir     string
	CgroupDriver string
	// CDISpecDirs are searched for CDI device specs; nil means the CDI
	// defaults (/etc/cdi, /var/run/cdi).
	CDISpecDirs []string
	// Handlers are the node's RuntimeClass handlers; nil knows only the
	// default. RunPodSandbox and Status consult them through Handlers().
	Handlers *runc.Handlers
	// Runtime is used at recovery, to learn what runc knows of a
	// container whose start the previous daemon did not finish recording.
	Runtime *runc.Runtime
	Logger  *slog.Logger
	// OnOOMKill, when set, is told of a container found OOM-killed as its
	// exit is folded in, for the daemon's metrics. Concurrent lookups may
	// report one container more than once.
	OnOOMKill func(id string)
	// Hooks are told of each container's lifecycle and may adjust it
	// (NRI); nil means none.
	Hooks Hooks
}

// Manager owns every app container of the node.

// The manager reaches the rest of the daemon through these small
// interfaces, so its lifecycle logic is tested with fakes and no root.

// Sandboxes is what the manager needs of the pods its containers live in.
type Sandboxes interface {
	Get(idOrPrefix string) (*sandbox.Sandbox, error)
	// Lock holds the pod's record lock; Create holds it so the pod cannot
	// stop under a container being made.
	Lock(id string) (unlock func())
	// Monitor is the pod's monitor; an error means it is gone.
	Monitor(ctx context.Context, sb *sandbox.Sandbox) (Monitor, error)
	// Runtime is the OCI runtime of the pod's RuntimeClass handler.
	Runtime(sb *sandbox.Sandbox) (Runtime, error)
	// ForceDeleteIn kills and deletes a container through its pod's
	// runtime directly, for when the pod's monitor is gone; ForceDelete
	// does so through the default runtime, for a container whose pod's
	// record is gone.
	ForceDeleteIn(ctx context.Context, sb *sandbox.Sandbox, id string) error
	ForceDelete(ctx context.Context, id string) error
	// UpdateResources writes a pod resize into the pod's cgroup: the
	// sandbox manager is the one writer of pod cgroups.
	UpdateResources(ctx context.Context, sandboxID string, r *sandbox.Resources) error
}

// Monitor is the part of a pod's monitor (pkg/monitor.Client) that runs
// and watches its containers.
type Monitor interface {
	Create(ctx context.Context, req monitor.CreateRequest) (pid int, err error)
	Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error
	Wait(ctx context.Context, id string) (*monitor.Exit, error)
	Delete(ctx context.Context, id string) error
	Exec(ctx context.Context, req monitor.ExecRequest) (*monitor.ExecResult, error)
	ReopenLog(ctx context.Context, id string) error
}

// Images is what the manager needs of the image store.
type Images interface {
	Get(refOrID string) (*image.Image, error)
	PrepareRootfs(ctx context.Context, imageID, containerID, target string, readOnly bool) (string, error)
	RemoveRootfs(containerID, target string) error
}

// Runtime is what the manager asks an OCI runtime (pkg/runc) directly,
// outside the monitor.
type Runtime interface {
	State(ctx context.Context, id string) (*runc.State, error)
	Update(ctx context.Context, id string, r *specs.LinuxResources) error
	Delete(ctx context.Context, id string, force bool) error
}

// sandboxManager adapts *sandbox.Manager, whose Monitor and Runtime return
// concrete types, to Sandboxes.
type sandboxManager struct{ *sandbox.Manager }

func (s sandboxManager) Monitor(ctx context.Context, sb *sandbox.Sandbox) (Monitor, error) {
	c, err := s.Manager.Monitor(ctx, sb)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (s sandboxManager) Runtime(sb *sandbox.Sandbox) (Runtime, error) {
	rt, err := s.Manager.Runtime(sb)
	if err != nil {
		return nil, err
	}
	return rt, nil
}

// Manager owns every app container of the node.
type Manager struct {
	opts      Options
	log       *slog.Logger
	db        *store.DB
	sandboxes Sandboxes
	images    Images
	minOOM    int
	// hugetlb: the host has the hugetlb controller, detected once here.
	hugetlb bool

	mu    sync.Mutex
	names map[string]string
	locks lockmap.Map

	cdiOnce sync.Once
	cdi     *cdi.Cache
	cdiErr  error
}

// New returns a Manager with the name reservations of the stored
// containers. Call Recover before serving requests.
func New(opts Options) (*Manager, error) {
	d := deps{db: opts.DB, images: opts.Images}
	if opts.Sandboxes != nil {
		d.sandboxes = sandboxManager{opts.Sandboxes}
	}
	return newManager(opts, d)
}

// deps are the manager's collaborators as interfaces; tests pass fakes.
type deps struct {
	db        *store.DB
	sandboxes Sandboxes
	images    Images
}

func newManager(opts Options, d deps) (*Manager, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m := &Manager{
		opts: opts, log: opts.Logger, names: map[string]string{},
		db: d.db, sandboxes: d.sandboxes, images: d.images,
	}
	if data, err := os.ReadFile("/proc/self/oom_score_adj"); err == nil {
		m.minOOM, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	m.hugetlb = hugetlbAvailable(cgroups.IsCgroup2UnifiedMode(), "/sys/fs/cgroup", readMountInfo())
	if !m.hugetlb {
		m.log.Info("no hugetlb cgroup controller: hugepage limits are left out of container specs")
	}
	// Names are reserved before any request is served; settling the
	// records on the host is Recover's, an explicit step.
	all, err := store.List[Container](m.db, bucket)
	if err != nil {
		return nil, fmt.Errorf("load containers: %w", err)
	}
	for _, c := range all {
		if c.State == StateCreating {
			continue // Recover undoes it
		}
		if sb, err := m.sandboxes.Get(c.SandboxID); err == nil {
			m.names[reservedName(&c.Config, sb)] = c.ID
		}
	}
	return m, nil
}

// Handlers returns the node's RuntimeClass handlers.
// A nil Manager knows only the default handler.
func (m *Manager) Handlers() *runc.Handlers {
	if m == nil {
		return nil
	}
	return m.opts.Handlers
}

// reservedName is the kubelet's identity of a container in its pod.
func reservedName(c *Config, sb *sandbox.Sandbox) string {
	return fmt.Sprintf("%s_%s_%s_%s_%d", c.Name, sb.Config.Name, sb.Config.Namespace, sb.Config.UID, c.Attempt)
}

func (m *Manager) unreserve(name, id string) {
	m.mu.Lock()
	if m.names[name] == id {
		delete(m.names, name)
	}
	m.mu.Unlock()
}

func (m *Manager) save(c *Container) error { return m.db.Put(bucket, c.ID, c) }

func (m *Manager) load(idOrPrefix string) (*Container, error) {
	var c Container
	if err := m.db.GetByPrefix(bucket, idOrPrefix, &c); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%q: %w", idOrPrefix, ErrNotFound)
		}
		return nil, err
	}
	if c.State == StateCreating {
		return nil, fmt.Errorf("%q: %w", idOrPrefix, ErrNotFound)
	}
	return &c, nil
}
