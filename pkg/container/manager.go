package container

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/pod-shim/pod-shim/pkg/failpoint"
	"github.com/pod-shim/pod-shim/pkg/image"
	"github.com/pod-shim/pod-shim/pkg/lockmap"
	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/oci"
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
	// Runtimes are the OCI runtimes by RuntimeClass handler, for
	// UpdateContainerResources; a handler missing here uses Runtime.
	Runtimes map[string]*runc.Runtime
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
type Manager struct {
	opts   Options
	log    *slog.Logger
	minOOM int
	// hugetlb: the host has the hugetlb controller, detected once here.
	hugetlb bool

	mu    sync.Mutex
	names map[string]string
	locks lockmap.Map

	cdiOnce sync.Once
	cdi     *cdi.Cache
	cdiErr  error
}

// New returns a Manager and rebuilds name reservations from the store.
func New(opts Options) (*Manager, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m := &Manager{opts: opts, log: opts.Logger, names: map[string]string{}}
	if data, err := os.ReadFile("/proc/self/oom_score_adj"); err == nil {
		m.minOOM, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	m.hugetlb = hugetlbAvailable("/sys/fs/cgroup", readMountInfo())
	if !m.hugetlb {
		m.log.Info("no hugetlb cgroup controller: hugepage limits are left out of container specs")
	}
	all, err := store.List[Container](opts.DB, bucket)
	if err != nil {
		return nil, fmt.Errorf("load containers: %w", err)
	}
	for _, c := range all {
		if c.State == StateCreating {
			// Create never finished: undo it (recovery of a crashed daemon).
			m.log.Info("undoing interrupted container creation", "container", c.ID)
			if err := m.discard(context.Background(), c); err != nil {
				m.log.Error("undo container", "container", c.ID, "error", err)
			}
			continue
		}
		if err := m.recover(c); err != nil {
			m.log.Error("recover container", "container", c.ID, "error", err)
		}
		if sb, err := opts.Sandboxes.Get(c.SandboxID); err == nil {
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

func (m *Manager) save(c *Container) error { return m.opts.DB.Put(bucket, c.ID, c) }

func (m *Manager) load(idOrPrefix string) (*Container, error) {
	var c Container
	if err := m.opts.DB.GetByPrefix(bucket, idOrPrefix, &c); err != nil {
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

// refresh folds an exit the monitor recorded into the container's record.
// It reads one small file: status calls never wait on the monitor.
func (m *Manager) refresh(c *Container) (changed bool) {
	if c.State != StateRunning {
		return false
	}
	sb, err := m.opts.Sandboxes.Get(c.SandboxID)
	if err != nil {
		return false
	}
	ex, err := monitor.ReadExit(sb.Dir, c.ID)
	if err != nil {
		return false
	}
	c.State = StateExited
	c.ExitCode = int32(ex.ExitCode)
	c.FinishedAt = ex.ExitedAt
	switch {
	case ex.OOMKilled:
		c.Reason = "OOMKilled"
		if m.opts.OnOOMKill != nil {
			m.opts.OnOOMKill(c.ID)
		}
	case ex.ExitCode == 0:
		c.Reason = "Completed"
	default:
		c.Reason = "Error"
	}
	if m.opts.Hooks != nil {
		m.opts.Hooks.StopContainer(context.Background(), c)
	}
	return true
}

// Get returns a container with its current state.
func (m *Manager) Get(idOrPrefix string) (*Container, error) {
	c, err := m.load(idOrPrefix)
	if err != nil {
		return nil, err
	}
	if m.refresh(c) {
		unlock := m.locks.Lock(c.ID)
		err := m.save(c)
		unlock()
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

// List returns the containers matching f, oldest first.
func (m *Manager) List(f Filter) ([]*Container, error) {
	all, err := store.List[Container](m.opts.DB, bucket)
	if err != nil {
		return nil, err
	}
	var id string
	if f.ID != "" {
		if id, err = m.opts.DB.Resolve(bucket, f.ID); err != nil {
			return nil, nil
		}
	}
	var sbID string
	if f.SandboxID != "" {
		sb, err := m.opts.Sandboxes.Get(f.SandboxID)
		if err != nil {
			return nil, nil
		}
		sbID = sb.ID
	}
	out := all[:0]
	for _, c := range all {
		if c.State == StateCreating || (id != "" && c.ID != id) || (sbID != "" && c.SandboxID != sbID) {
			continue
		}
		m.refresh(c)
		if f.State != nil && c.State != *f.State && !(c.State == StateStarting && *f.State == StateCreated) {
			continue
		}
		if !sandbox.MatchLabels(c.Config.Labels, f.Labels) {
			continue
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// Create prepares a container: rootfs, spec and record. No process starts
// and runc is not called until Start, which then needs a single
// `runc run --detach` (as containerd defers task creation to StartContainer).
func (m *Manager) Create(ctx context.Context, sandboxID string, cfg Config) (*Container, error) {
	if cfg.Name == "" {
		return nil, fmt.Errorf("metadata.name is empty: %w", ErrInvalid)
	}
	if cfg.Image == "" {
		return nil, fmt.Errorf("image is empty: %w", ErrInvalid)
	}
	if sandboxID == "" {
		return nil, fmt.Errorf("pod_sandbox_id is empty: %w", ErrInvalid)
	}
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	sb, err := m.opts.Sandboxes.Get(sandboxID)
	if err != nil {
		return nil, err
	}
	if sb.State == sandbox.StateCreating {
		// Its Run holds the lock until the pod is ready or undone (NRI
		// plugins may hold it a while): fail now rather than wait.
		return nil, fmt.Errorf("sandbox %s is still being created: %w", sb.ID, sandbox.ErrNotReady)
	}
	unlockSB := m.opts.Sandboxes.Lock(sb.ID)
	defer unlockSB()
	if sb, err = m.opts.Sandboxes.Get(sb.ID); err != nil {
		return nil, err
	}
	if sb.State != sandbox.StateReady {
		return nil, fmt.Errorf("sandbox %s: %w", sb.ID, sandbox.ErrNotReady)
	}
	if err := validateInSandbox(&cfg, sb); err != nil {
		return nil, err
	}
	img, err := m.opts.Images.Get(cfg.Image)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", cfg.Image, err)
	}

	c := &Container{
		ID:        store.NewID(),
		SandboxID: sb.ID,
		Config:    cfg,
		ImageID:   img.ID,
		ImageRef:  img.ID,
		State:     StateCreating,
		CreatedAt: time.Now(),
	}
	if len(img.RepoDigests) > 0 {
		c.ImageRef = img.RepoDigests[0]
	}
	if cfg.LogPath != "" && sb.Config.LogDirectory != "" {
		c.LogPath = filepath.Join(sb.Config.LogDirectory, cfg.LogPath)
	}
	c.Bundle = filepath.Join(m.opts.StateDir, "containers", c.ID)
	// CRI's stop_signal, else the image's STOPSIGNAL, else SIGTERM; kept
	// as the CRI enum names it, so status reports it back.
	c.StopSignal = "SIGTERM"
	for _, s := range []string{cfg.StopSignal, img.Config.StopSignal} {
		if sig, err := signalNumber(s); err == nil {
			c.StopSignal = signalName(sig)
			break
		}
	}
	if cfg.Resources != nil {
		r := *cfg.Resources
		c.Resources = &r
	}
	name := reservedName(&cfg, sb)
	m.mu.Lock()
	if other, ok := m.names[name]; ok {
		m.mu.Unlock()
		return nil, fmt.Errorf("name %q is reserved by container %s: %w", name, other, ErrAlreadyExists)
	}
	m.names[name] = c.ID
	m.mu.Unlock()
	defer m.locks.Lock(c.ID)()
	if m.opts.Hooks != nil {
		defer m.opts.Hooks.BeginCreate()()
	}

	if err := m.save(c); err != nil {
		m.unreserve(name, c.ID)
		return nil, err
	}
	failpoint.Hit("container-create-after-intent")
	if err := m.prepare(ctx, c, sb, img); err != nil {
		if derr := m.discard(context.WithoutCancel(ctx), c); derr != nil {
			m.log.Error("undo failed container", "container", c.ID, "error", derr)
		}
		m.unreserve(name, c.ID)
		if m.opts.Hooks != nil {
			m.opts.Hooks.RemoveContainer(context.WithoutCancel(ctx), c)
		}
		return nil, err
	}
	failpoint.Hit("container-create-before-done")
	c.State = StateCreated
	if err := m.save(c); err != nil {
		return nil, err
	}
	if m.opts.Hooks != nil {
		m.opts.Hooks.PostCreateContainer(ctx, c)
	}
	return c, nil
}

func (m *Manager) unreserve(name, id string) {
	m.mu.Lock()
	if m.names[name] == id {
		delete(m.names, name)
	}
	m.mu.Unlock()
}

func (m *Manager) prepare(ctx context.Context, c *Container, sb *sandbox.Sandbox, img *image.Image) error {
	if c.LogPath != "" {
		if err := os.MkdirAll(filepath.Dir(c.LogPath), 0o755); err != nil {
			return fmt.Errorf("create log dir: %w", err)
		}
	}
	if err := m.requireFeatures(ctx, c, sb); err != nil {
		return err
	}
	target := filepath.Join(c.Bundle, "rootfs")
	if err := os.MkdirAll(target, 0o700); err != nil {
		return err
	}
	root, err := m.opts.Images.PrepareRootfs(ctx, img.ID, c.ID, target, false)
	if err != nil {
		return fmt.Errorf("prepare rootfs: %w", err)
	}
	c.Rootfs = root
	if err := idmapRootfs(root, sb); err != nil {
		return err
	}
	failpoint.Hit("container-create-after-rootfs")
	in := specInput{
		ID: c.ID, Config: &c.Config, Sandbox: sb, Image: img, Rootfs: root,
		CgroupDriver: m.opts.CgroupDriver, MinOOMScoreAdj: m.minOOM,
		NoSwapAccounting: !swapAccounting(), NoHugetlb: !m.hugetlb, Log: m.log.With("container", c.ID),
	}
	for _, mnt := range c.Config.Mounts {
		if mnt.Propagation != PropagationPrivate && mnt.Image == "" {
			in.MountInfo = readMountInfo()
			break
		}
	}
	if c.Config.Security.PIDMode == sandbox.ModeTarget {
		if in.TargetPID, err = m.targetPID(sb, c.Config.Security.TargetID); err != nil {
			return err
		}
	}
	if in.ImageVolumes, err = m.prepareImageVolumes(ctx, c); err != nil {
		return err
	}
	spec, err := buildSpec(in)
	if err != nil {
		return err
	}
	if err := m.injectCDI(spec, &c.Config); err != nil {
		return err
	}
	if m.opts.Hooks != nil {
		if err := m.opts.Hooks.CreateContainer(ctx, c, spec); err != nil {
			return fmt.Errorf("create hook: %w", err)
		}
	}
	u := spec.Process.User
	c.User = &User{UID: int64(u.UID), GID: int64(u.GID)}
	for _, g := range u.AdditionalGids {
		c.User.SupplementalGroups = append(c.User.SupplementalGroups, int64(g))
	}
	if c.Config.WorkingDir != "" {
		// Like containerd: a working dir missing from the image is made.
		if dir, err := securejoinPath(root, c.Config.WorkingDir); err == nil {
			_ = os.MkdirAll(dir, 0o755)
		}
	}
	return oci.WriteBundle(c.Bundle, spec)
}

// discard removes all a container left on the host and its record.
func (m *Manager) discard(ctx context.Context, c *Container) error {
	var errs []error
	if sb, err := m.opts.Sandboxes.Get(c.SandboxID); err == nil {
		if mon, err := m.opts.Sandboxes.Monitor(ctx, sb); err == nil {
			if err := mon.Delete(ctx, c.ID); err != nil {
				errs = append(errs, fmt.Errorf("delete from runtime: %w", err))
			}
		} else if err := m.forceDelete(ctx, c); err != nil {
			// The pod's monitor is gone: runc directly, or the
			// container would outlive its record.
			errs = append(errs, fmt.Errorf("delete from runtime without monitor: %w", err))
		}
		if err := monitor.RemoveExit(sb.Dir, c.ID); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		// runc removes the container's cgroup on delete, unless its state
		// was lost (host restart) or the runtime is gone.
		oci.RemoveCgroup(m.opts.CgroupDriver, oci.CgroupsPath(m.opts.CgroupDriver, sb.Config.CgroupParent, c.ID))
	}
	if err := m.opts.Images.RemoveRootfs(c.ID, filepath.Join(c.Bundle, "rootfs")); err != nil {
		errs = append(errs, err)
	}
	if err := m.releaseImageVolumes(c); err != nil {
		errs = append(errs, err)
	}
	if c.Bundle != "" {
		if err := os.RemoveAll(c.Bundle); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return m.opts.DB.Delete(bucket, c.ID)
}

// Start runs a created container. A container that cannot start is left
// exited with exit code 128 and reason StartError, as the kubelet expects.
func (m *Manager) Start(ctx context.Context, idOrPrefix string) error {
	c, err := m.load(idOrPrefix)
	if err != nil {
		return err
	}
	defer m.locks.Lock(c.ID)()
	if c, err = m.load(c.ID); err != nil {
		return err
	}
	if c.State != StateCreated {
		return fmt.Errorf("container %s is %s, not created: %w", c.ID, c.State, ErrState)
	}
	sb, err := m.opts.Sandboxes.Get(c.SandboxID)
	if err != nil {
		return err
	}
	if sb.State != sandbox.StateReady {
		return fmt.Errorf("sandbox %s: %w", sb.ID, sandbox.ErrNotReady)
	}
	mon, err := m.opts.Sandboxes.Monitor(ctx, sb)
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

// Stop stops a running container: its stop signal, then SIGKILL after
// timeout (0 kills at once). Stopping a stopped or unknown container
// succeeds.
func (m *Manager) Stop(ctx context.Context, idOrPrefix string, timeout time.Duration) error {
	c, err := m.load(idOrPrefix)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer m.locks.Lock(c.ID)()
	return m.stop(ctx, c, timeout)
}

func (m *Manager) stop(ctx context.Context, c *Container, timeout time.Duration) error {
	c, err := m.load(c.ID)
	if err != nil {
		return nil
	}
	m.refresh(c)
	if c.State != StateRunning {
		return m.save(c)
	}
	sb, err := m.opts.Sandboxes.Get(c.SandboxID)
	if err != nil {
		return err
	}
	mon, err := m.opts.Sandboxes.Monitor(ctx, sb)
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
		sig := parseSignal(c.StopSignal)
		if err := mon.Kill(ctx, c.ID, sig, false); err != nil {
			return fmt.Errorf("signal container: %w", err)
		}
		wctx, cancel := context.WithTimeout(ctx, timeout)
		_, err := mon.Wait(wctx, c.ID)
		cancel()
		if err == nil {
			m.refresh(c)
			return m.save(c)
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
	m.refresh(c)
	return m.save(c)
}

// parseSignal reads "SIGTERM", "TERM", "15" or a CRI enum name such as
// "SIGRTMINPLUS1"; anything else is SIGTERM.
func parseSignal(s string) syscall.Signal {
	if sig, err := signalNumber(s); err == nil {
		return sig
	}
	return syscall.SIGTERM
}

// Remove stops the container if needed and deletes it. Removing an unknown
// container succeeds.
func (m *Manager) Remove(ctx context.Context, idOrPrefix string) error {
	c, err := m.load(idOrPrefix)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer m.locks.Lock(c.ID)()
	if err := m.stop(ctx, c, 0); err != nil {
		return err
	}
	if err := m.discard(ctx, c); err != nil {
		return err
	}
	if m.opts.Hooks != nil {
		m.opts.Hooks.RemoveContainer(ctx, c)
	}
	if sb, err := m.opts.Sandboxes.Get(c.SandboxID); err == nil {
		m.unreserve(reservedName(&c.Config, sb), c.ID)
	} else {
		m.mu.Lock()
		for k, v := range m.names {
			if v == c.ID {
				delete(m.names, k)
			}
		}
		m.mu.Unlock()
	}
	m.locks.Delete(c.ID)
	return nil
}

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
	sb, err := m.opts.Sandboxes.Get(c.SandboxID)
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
	mon, err := m.opts.Sandboxes.Monitor(ctx, sb)
	if err != nil {
		return nil, err
	}
	res, err := mon.Exec(ctx, monitor.ExecRequest{ContainerID: c.ID, Process: proc, Timeout: timeout})
	if err != nil {
		if errors.Is(err, monitor.ErrExecTimeout) {
			return nil, fmt.Errorf("command %q timed out after %s: %w", strings.Join(cmd, " "), timeout, context.DeadlineExceeded)
		}
		return nil, err
	}
	return &ExecResult{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: int32(res.ExitCode)}, nil
}

// StopPod kills every container of a pod, then stops the pod itself.
func (m *Manager) StopPod(ctx context.Context, sandboxID string) error {
	return m.podWide(ctx, sandboxID, "stop",
		func(id string) error { return m.Stop(ctx, id, 0) },
		m.opts.Sandboxes.Stop)
}

// RemovePod removes every container of a pod, then the pod.
func (m *Manager) RemovePod(ctx context.Context, sandboxID string) error {
	return m.podWide(ctx, sandboxID, "remove",
		func(id string) error { return m.Remove(ctx, id) },
		m.opts.Sandboxes.Remove)
}

// podWide applies each to every container of a pod, then pod to the pod
// itself; an unknown pod is done already (Stop and Remove are idempotent).
func (m *Manager) podWide(ctx context.Context, sandboxID, verb string, each func(id string) error, pod func(context.Context, string) error) error {
	sb, err := m.opts.Sandboxes.Get(sandboxID)
	if errors.Is(err, sandbox.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	cs, err := m.List(Filter{SandboxID: sb.ID})
	if err != nil {
		return err
	}
	for _, c := range cs {
		if err := each(c.ID); err != nil {
			return fmt.Errorf("%s container %s: %w", verb, c.ID, err)
		}
	}
	return pod(ctx, sb.ID)
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
	sb, err := m.opts.Sandboxes.Get(c.SandboxID)
	if err != nil {
		return err
	}
	mon, err := m.opts.Sandboxes.Monitor(ctx, sb)
	if err != nil {
		return err
	}
	return mon.ReopenLog(ctx, c.ID)
}

// recover settles, at daemon start, a record the previous daemon left
// mid-operation or that the host's restart made stale.
//
// Assumptions: the exit files and runc's state live in the state dir
// (tmpfs); if the pod's dir is gone the host restarted and nothing of the
// pod runs any more. A container caught in StateStarting ran if and only if
// runc knows it.
func (m *Manager) recover(c *Container) error {
	sb, err := m.opts.Sandboxes.Get(c.SandboxID)
	if err != nil {
		return nil // an orphan; RemovePodSandbox of its pod is gone too
	}
	if _, err := os.Stat(sb.Dir); os.IsNotExist(err) && (c.State == StateRunning || c.State == StateStarting) {
		c.State = StateExited
		c.ExitCode = 255
		c.FinishedAt = time.Now()
		c.Reason = "Unknown"
		c.Message = "the host restarted while the container was running"
		return m.save(c)
	}
	if c.State != StateStarting {
		return nil
	}
	rt, err := m.runtimeOf(c)
	if err != nil {
		return nil // no runtime to ask: leave the record as it is
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := settledState(ctx, rt, c.ID)
	switch {
	case errors.Is(err, runc.ErrNotFound):
		c.State = StateCreated
	case err != nil:
		return err
	default:
		c.State = StateRunning
		c.Pid = st.Pid
		c.StartedAt = st.Created
		m.refresh(c)
	}
	return m.save(c)
}

// settledState asks runc about a container whose start a crashed daemon left
// in flight. The monitor aborts a create whose caller hung up, so for a
// moment runc may still know a container that is about to be deleted (or be
// half-way through creating it): only the same answer twice, a second
// apart, and not "created", counts. The bound keeps a broken runc from
// holding up the daemon's start.
func settledState(ctx context.Context, rt *runc.Runtime, id string) (*runc.State, error) {
	var prevStatus string
	for i := 0; ; i++ {
		st, err := rt.State(ctx, id)
		if err != nil && !errors.Is(err, runc.ErrNotFound) {
			return nil, err
		}
		status := "gone"
		if err == nil {
			status = st.Status
		}
		if (i > 0 && status == prevStatus && status != "created") || i >= 10 {
			return st, err
		}
		prevStatus = status
		select {
		case <-ctx.Done():
			return st, err
		case <-time.After(time.Second):
		}
	}
}
