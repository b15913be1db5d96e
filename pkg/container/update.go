package container

import (
	"context"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/pod-shim/pod-shim/pkg/oci"
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
	c, unlock, err := m.lockRecord(ctx, idOrPrefix)
	if err != nil {
		return err
	}
	defer unlock()
	if err := m.settle(ctx, c); err != nil {
		return err
	}
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

// runtimeOf is the OCI runtime of the container's pod: the one its pod's
// recorded RuntimeClass handler names, as the sandbox manager looks it up,
// so the pod's pause and containers share one binary and root.
func (m *Manager) runtimeOf(c *Container) (Runtime, error) {
	sb, err := m.sandboxes.Get(c.SandboxID)
	if err != nil {
		return nil, err
	}
	return m.sandboxes.Runtime(sb)
}

// forceDelete kills and deletes a container through its pod's runtime
// directly, when the pod's monitor is gone.
func (m *Manager) forceDelete(ctx context.Context, c *Container) error {
	sb, err := m.sandboxes.Get(c.SandboxID)
	if err != nil {
		// The pod's record is gone: the default runtime is all there is.
		return m.sandboxes.ForceDelete(ctx, c.ID)
	}
	return m.sandboxes.ForceDeleteIn(ctx, sb, c.ID)
}
