package container

import (
	"context"
	"errors"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/pod-shim/pod-shim/pkg/oci"
	"github.com/pod-shim/pod-shim/pkg/runc"
)

// UpdateResources applies new limits to a container: live through the
// runtime when it runs, and in its bundle so a created container starts with
// them. Status reports them afterwards. oom_score_adj cannot change on a
// live process through runc and, as in containerd, is kept as created.
func (m *Manager) UpdateResources(ctx context.Context, idOrPrefix string, r *Resources) error {
	if r == nil {
		return fmt.Errorf("no linux resources given: %w", ErrInvalid)
	}
	if err := validateResources(r); err != nil {
		return err
	}
	c, err := m.load(idOrPrefix)
	if err != nil {
		return err
	}
	defer m.locks.Lock(c.ID)()
	if c, err = m.load(c.ID); err != nil {
		return err
	}
	m.refresh(c)
	if c.State == StateExited {
		return fmt.Errorf("container %s has exited: %w", c.ID, ErrState)
	}
	if m.opts.Hooks != nil {
		if r, err = m.opts.Hooks.UpdateContainer(ctx, c, r); err != nil {
			return fmt.Errorf("update hook: %w", err)
		}
		defer m.opts.Hooks.PostUpdateContainer(ctx, c)
	}
	spec, err := oci.ReadBundle(c.Bundle)
	if err != nil {
		return fmt.Errorf("read container spec: %w", err)
	}
	fresh := &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{Resources: &specs.LinuxResources{}}}
	applyResources(fresh, r, m.minOOM)
	lr := fresh.Linux.Resources
	if lr.Memory != nil && !swapAccounting() {
		lr.Memory.Swap = nil
	}
	if !m.hugetlb {
		lr.HugepageLimits = nil
	}
	if c.State == StateRunning {
		rt, err := m.runtimeOf(c)
		if err != nil {
			return err
		}
		if err := rt.Update(ctx, c.ID, lr); err != nil {
			return fmt.Errorf("update container %s: %w", c.ID, err)
		}
	}
	cur := spec.Linux.Resources
	cur.CPU, cur.Memory, cur.HugepageLimits, cur.Unified = lr.CPU, lr.Memory, lr.HugepageLimits, lr.Unified
	if err := oci.WriteBundle(c.Bundle, spec); err != nil {
		return err
	}
	nr := *r
	if c.Resources != nil {
		nr.OOMScoreAdj = c.Resources.OOMScoreAdj
	} else {
		nr.OOMScoreAdj = 0
	}
	c.Resources = &nr
	return m.save(c)
}

// runtimeOf is the OCI runtime of the container's pod (its RuntimeClass).
func (m *Manager) runtimeOf(c *Container) (*runc.Runtime, error) {
	sb, err := m.opts.Sandboxes.Get(c.SandboxID)
	if err != nil {
		return nil, err
	}
	if rt, ok := m.opts.Runtimes[sb.Config.RuntimeHandler]; ok && rt != nil {
		return rt, nil
	}
	if m.opts.Runtime == nil {
		return nil, fmt.Errorf("no OCI runtime configured for handler %q", sb.Config.RuntimeHandler)
	}
	return m.opts.Runtime, nil
}

// forceDelete kills and deletes a container through its pod's runtime
// directly, when the pod's monitor is gone. The default handler goes
// through the sandbox manager (which may have no runtime to use in tests).
func (m *Manager) forceDelete(ctx context.Context, c *Container) error {
	sb, err := m.opts.Sandboxes.Get(c.SandboxID)
	if err == nil && sb.Config.RuntimeHandler != "" && sb.Config.RuntimeHandler != "runc" {
		if rt, ok := m.opts.Runtimes[sb.Config.RuntimeHandler]; ok && rt != nil {
			if err := rt.Delete(ctx, c.ID, true); err != nil && !errors.Is(err, runc.ErrNotFound) {
				return err
			}
			return nil
		}
	}
	return m.opts.Sandboxes.ForceDelete(ctx, c.ID)
}
