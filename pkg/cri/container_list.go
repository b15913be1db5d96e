package cri

import (
	"context"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/pkg/container"
)

// ListContainers lists containers, filtered by id, pod, state and labels.
func (s *Server) ListContainers(ctx context.Context, r *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	items, err := s.listContainers(r.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListContainersResponse{Containers: items}, nil
}

// StreamContainers is ListContainers for clients that want a stream.
func (s *Server) StreamContainers(r *runtimeapi.StreamContainersRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainersResponse]) error {
	items, err := s.listContainers(r.GetFilter())
	if err != nil {
		return err
	}
	return stream.Send(&runtimeapi.StreamContainersResponse{Containers: items})
}

func (s *Server) listContainers(f *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	filter := container.Filter{ID: f.GetId(), SandboxID: f.GetPodSandboxId(), Labels: f.GetLabelSelector()}
	if st := f.GetState(); st != nil {
		var v container.State
		switch st.GetState() {
		case runtimeapi.ContainerState_CONTAINER_CREATED:
			v = container.StateCreated
		case runtimeapi.ContainerState_CONTAINER_RUNNING:
			v = container.StateRunning
		case runtimeapi.ContainerState_CONTAINER_EXITED:
			v = container.StateExited
		default:
			v = container.StateUnknown
		}
		filter.State = &v
	}
	cs, err := s.containers.List(filter)
	if err != nil {
		return nil, err
	}
	out := make([]*runtimeapi.Container, 0, len(cs))
	for _, c := range cs {
		out = append(out, &runtimeapi.Container{
			Id:           c.ID,
			PodSandboxId: c.SandboxID,
			Metadata:     &runtimeapi.ContainerMetadata{Name: c.Config.Name, Attempt: c.Config.Attempt},
			Image:        statusImage(&c.Config),
			ImageRef:     c.ImageRef,
			ImageId:      c.ImageID,
			State:        containerState(c.State),
			CreatedAt:    c.CreatedAt.UnixNano(),
			Labels:       c.Config.Labels,
			Annotations:  c.Config.Annotations,
		})
	}
	return out, nil
}
