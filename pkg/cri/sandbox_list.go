package cri

import (
	"context"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// ListPodSandbox lists pods, filtered by id, state and labels.
func (s *Server) ListPodSandbox(ctx context.Context, r *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	items, err := s.listSandboxes(r.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxResponse{Items: items}, nil
}

// StreamPodSandboxes is ListPodSandbox for clients that want a stream.
func (s *Server) StreamPodSandboxes(r *runtimeapi.StreamPodSandboxesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxesResponse]) error {
	items, err := s.listSandboxes(r.GetFilter())
	if err != nil {
		return err
	}
	return stream.Send(&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: items})
}

func (s *Server) listSandboxes(f *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	filter := sandbox.Filter{ID: f.GetId(), Labels: f.GetLabelSelector()}
	if st := f.GetState(); st != nil {
		v := sandbox.StateNotReady
		if st.GetState() == runtimeapi.PodSandboxState_SANDBOX_READY {
			v = sandbox.StateReady
		}
		filter.State = &v
	}
	sbs, err := s.sandboxes.List(filter)
	if err != nil {
		return nil, err
	}
	out := make([]*runtimeapi.PodSandbox, 0, len(sbs))
	for _, sb := range sbs {
		out = append(out, &runtimeapi.PodSandbox{
			Id:             sb.ID,
			Metadata:       sandboxMetadata(sb),
			State:          sandboxState(sb.State),
			CreatedAt:      sb.CreatedAt.UnixNano(),
			Labels:         sb.Config.Labels,
			Annotations:    sb.Config.Annotations,
			RuntimeHandler: sb.Config.RuntimeHandler,
		})
	}
	return out, nil
}
