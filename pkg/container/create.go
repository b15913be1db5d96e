package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pod-shim/pod-shim/pkg/failpoint"
	"github.com/pod-shim/pod-shim/pkg/image"
	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/oci"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
	"github.com/pod-shim/pod-shim/pkg/store"
)

// Create prepares a container: rootfs, spec and record. No process starts
// and runc is not called until Start, which then needs a single
// `runc run --detach` (as containerd defers task creation to StartContainer).
func (m *Manager) Create(ctx context.Context, sandboxID string, cfg Config) (*Container, error) {
	if err := checkRequired(sandboxID, &cfg); err != nil {
		return nil, err
	}
	sb, err := m.sandboxes.Get(sandboxID)
	if err != nil {
		return nil, err
	}
	if sb.State == sandbox.StateCreating {
		// Its Run holds the lock until the pod is ready or undone (NRI
		// plugins may hold it a while): fail now rather than wait.
		return nil, fmt.Errorf("sandbox %s is still being created: %w", sb.ID, sandbox.ErrNotReady)
	}
	// The pod's lock, held to the end: the pod cannot stop or go under a
	// container being made into it.
	unlockSB := m.sandboxes.Lock(sb.ID)
	defer unlockSB()
	if sb, err = m.sandboxes.Get(sb.ID); err != nil {
		return nil, err
	}
	if sb.State != sandbox.StateReady {
		return nil, fmt.Errorf("sandbox %s: %w", sb.ID, sandbox.ErrNotReady)
	}
	if err := validateInSandbox(&cfg, sb); err != nil {
		return nil, err
	}
	img, err := m.images.Get(cfg.Image)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", cfg.Image, err)
	}
	c := m.newRecord(cfg, sb, img)
	name := reservedName(&cfg, sb)
	if err := m.reserve(name, c.ID); err != nil {
		return nil, err
	}
	defer m.locks.Lock(c.ID)()
	if m.opts.Hooks != nil {
		// From before the record exists until its hooks ran: a plugin
		// registering meanwhile learns of it exactly once (see pkg/nri).
		defer m.opts.Hooks.BeginCreate()()
	}
	if err := m.save(c); err != nil {
		m.unreserve(name, c.ID)
		return nil, err
	}
	failpoint.Hit("container-create-after-intent")
	if err := m.prepare(ctx, c, sb, img); err != nil {
		m.undoCreate(ctx, c, name)
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

func checkRequired(sandboxID string, cfg *Config) error {
	switch {
	case cfg.Name == "":
		return fmt.Errorf("metadata.name is empty: %w", ErrInvalid)
	case cfg.Image == "":
		return fmt.Errorf("image is empty: %w", ErrInvalid)
	case sandboxID == "":
		return fmt.Errorf("pod_sandbox_id is empty: %w", ErrInvalid)
	}
	return validate(cfg)
}

// newRecord is the intent record of a container about to be made.
func (m *Manager) newRecord(cfg Config, sb *sandbox.Sandbox, img *image.Image) *Container {
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
	return c
}

// reserve takes the kubelet's name of a container for id.
func (m *Manager) reserve(name, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if other, ok := m.names[name]; ok {
		return fmt.Errorf("name %q is reserved by container %s: %w", name, other, ErrAlreadyExists)
	}
	m.names[name] = id
	return nil
}

// undoCreate takes back a Create that failed after its intent was saved.
func (m *Manager) undoCreate(ctx context.Context, c *Container, name string) {
	ctx = context.WithoutCancel(ctx)
	if err := m.discard(ctx, c); err != nil {
		m.log.Error("undo failed container", "container", c.ID, "error", err)
	}
	m.unreserve(name, c.ID)
	if m.opts.Hooks != nil {
		m.opts.Hooks.RemoveContainer(ctx, c)
	}
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
	root, err := m.images.PrepareRootfs(ctx, img.ID, c.ID, target, false)
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
	if sb, err := m.sandboxes.Get(c.SandboxID); err == nil {
		if mon, err := m.sandboxes.Monitor(ctx, sb); err == nil {
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
	if err := m.images.RemoveRootfs(c.ID, filepath.Join(c.Bundle, "rootfs")); err != nil {
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
	return m.db.Delete(bucket, c.ID)
}
