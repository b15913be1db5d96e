package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdatePodSandboxResources applies the kubelet's pod-level limits (in-place
// pod resize) to the pod's cgroup, the kubelet's cgroup_parent: the
// container manager checks the names with its rules for container
// resources, and the sandbox manager writes them.
func (s *Server) UpdatePodSandboxResources(ctx context.Context, r *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	if r.GetPodSandboxId() == "" {
		return nil, invalid("pod_sandbox_id is empty")
	}
	if r.GetResources() == nil {
		return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
	}
	if err := s.containers.UpdatePodResources(ctx, r.GetPodSandboxId(), resources(r.GetResources())); err != nil {
		return nil, err
	}
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}
