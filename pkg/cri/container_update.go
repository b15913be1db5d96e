package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/pkg/container"
)

// UpdateContainerResources applies new cgroup limits to a container, live.
func (s *Server) UpdateContainerResources(ctx context.Context, r *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	if r.GetContainerId() == "" {
		return nil, invalid("container_id is empty")
	}
	if r.GetLinux() == nil {
		return nil, invalid("linux resources are required")
	}
	if err := s.containers.UpdateResources(ctx, r.GetContainerId(), resources(r.GetLinux())); err != nil {
		return nil, err
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

// linuxResources is the CRI form of a container's limits, for status.
func linuxResources(r *container.Resources) *runtimeapi.LinuxContainerResources {
	out := &runtimeapi.LinuxContainerResources{
		CpuPeriod:              r.CPUPeriod,
		CpuQuota:               r.CPUQuota,
		CpuShares:              r.CPUShares,
		MemoryLimitInBytes:     r.MemoryLimit,
		OomScoreAdj:            r.OOMScoreAdj,
		CpusetCpus:             r.CpusetCPUs,
		CpusetMems:             r.CpusetMems,
		MemorySwapLimitInBytes: r.MemorySwapLimit,
		Unified:                r.Unified,
	}
	// Smallest page first, as in the spec: status must not vary with map order.
	for _, h := range r.Hugepages() {
		out.HugepageLimits = append(out.HugepageLimits, &runtimeapi.HugepageLimit{PageSize: h.PageSize, Limit: h.Limit})
	}
	return out
}
