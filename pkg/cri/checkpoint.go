package cri

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Checkpoint and restore need CRIU. The one this host can install (Debian's
// 3.17.1) fails `criu check` on its kernel, so nothing here could be built
// and tested: the calls answer Unimplemented with that reason, whatever the
// request, instead of gRPC's generic "method not implemented", so an
// operator reading the kubelet's error knows why.
const noCRIU = "checkpoint/restore needs a working CRIU, which pod-shim does not support yet"

// CheckpointContainer refuses: see noCRIU.
func (s *Server) CheckpointContainer(context.Context, *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	return nil, status.Error(codes.Unimplemented, "CheckpointContainer: "+noCRIU)
}

// CheckpointPod refuses: see noCRIU.
func (s *Server) CheckpointPod(context.Context, *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error) {
	return nil, status.Error(codes.Unimplemented, "CheckpointPod: "+noCRIU)
}

// RestorePod refuses: see noCRIU.
func (s *Server) RestorePod(context.Context, *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error) {
	return nil, status.Error(codes.Unimplemented, "RestorePod: "+noCRIU)
}
