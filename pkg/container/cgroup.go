package container

import (
	"context"

	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// UpdatePodResources applies the pod-level limits the kubelet computed
// (in-place pod resize) to the pod's cgroup. The names in r become cgroup
// file names, so they are checked here, with the container rules; the
// sandbox manager, the one writer of pod cgroups, writes them.
func (m *Manager) UpdatePodResources(ctx context.Context, sandboxID string, r *Resources) error {
	if r == nil {
		return nil
	}
	if err := validateResources(r); err != nil {
		return err
	}
	hugepages := r.HugepageLimits
	if !m.hugetlb {
		hugepages = nil
	}
	return m.sandboxes.UpdateResources(ctx, sandboxID, &sandbox.Resources{
		CPUPeriod:       r.CPUPeriod,
		CPUQuota:        r.CPUQuota,
		CPUShares:       r.CPUShares,
		MemoryLimit:     r.MemoryLimit,
		MemorySwapLimit: r.MemorySwapLimit,
		CpusetCPUs:      r.CpusetCPUs,
		CpusetMems:      r.CpusetMems,
		HugepageLimits:  hugepages,
		Unified:         r.Unified,
	})
}
