package cri

import (
	"context"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StopContainer sends the stop signal, then SIGKILL after the timeout.
// Stopping a stopped or unknown container succeeds.
func (s *Server) StopContainer(ctx context.Context, r *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	if r.GetContainerId() == "" {
		return nil, invalid("container_id is empty")
	}
	if r.GetTimeout() < 0 {
		return nil, invalid("timeout %d is negative", r.GetTimeout())
	}
	if err := s.containers.Stop(ctx, r.GetContainerId(), time.Duration(r.GetTimeout())*time.Second); err != nil {
		return nil, err
	}
	return &runtimeapi.StopContainerResponse{}, nil
}
