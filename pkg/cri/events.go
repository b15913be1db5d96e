package cri

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/pkg/container"
	"github.com/pod-shim/pod-shim/pkg/events"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// eventSource shows the poller of pkg/events the node's containers and
// pods, their states translated into lifecycle steps.
type eventSource struct{ s *Server }

func (e eventSource) Containers() ([]events.Object, error) {
	cs, err := e.s.containers.List(container.Filter{})
	if err != nil {
		return nil, err
	}
	out := make([]events.Object, len(cs))
	for i, c := range cs {
		out[i] = events.Object{ID: c.ID, SandboxID: c.SandboxID, Step: containerStep(c.State)}
	}
	return out, nil
}

func (e eventSource) Sandboxes() ([]events.Object, error) {
	sbs, err := e.s.sandboxes.List(sandbox.Filter{})
	if err != nil {
		return nil, err
	}
	out := make([]events.Object, len(sbs))
	for i, sb := range sbs {
		out[i] = events.Object{ID: sb.ID, SandboxID: sb.ID, Step: sandboxStep(sb.State)}
	}
	return out, nil
}

func containerStep(s container.State) events.Step {
	switch s {
	case container.StateCreated:
		return events.StepCreated
	case container.StateRunning:
		return events.StepStarted
	case container.StateExited:
		return events.StepStopped
	}
	return events.StepNone
}

func sandboxStep(s sandbox.State) events.Step {
	switch s {
	case sandbox.StateReady:
		return events.StepStarted
	case sandbox.StateNotReady:
		return events.StepStopped
	}
	return events.StepNone
}

// lifecycleMethods are the RPCs after which the snapshot is diffed at once.
var lifecycleMethods = map[string]bool{
	"RunPodSandbox": true, "StopPodSandbox": true, "RemovePodSandbox": true,
	"CreateContainer": true, "StartContainer": true, "StopContainer": true, "RemoveContainer": true,
}

// eventsInterceptor diffs right after a lifecycle RPC, before its answer
// goes out, so a subscriber sees the event no later than the caller sees
// the reply.
func (s *Server) eventsInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	name := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	diff := s.lifecycle != nil && lifecycleMethods[name]
	if diff && (strings.HasPrefix(name, "Remove") || strings.HasPrefix(name, "Stop")) {
		// An exit that happened since the last diff is reported while the
		// container still exists, so its STOPPED event carries its status.
		s.lifecycle.Reconcile()
	}
	resp, err := h(ctx, req)
	if diff {
		s.lifecycle.Reconcile()
	}
	return resp, err
}

// GetContainerEvents streams lifecycle events, each with the pod's status
// and the statuses of all its containers as they are when it is sent.
func (s *Server) GetContainerEvents(r *runtimeapi.GetEventsRequest, stream grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	if s.lifecycle == nil {
		return unavailable("events")
	}
	sub := s.lifecycle.Broker().Subscribe(events.DefaultBuffer)
	defer sub.Close()
	// Baseline now, so what happens from here on is reported.
	s.lifecycle.Reconcile()
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-sub.C:
			if !ok {
				return unavailableErr("event subscriber fell too far behind and was dropped; subscribe again")
			}
			if err := stream.Send(s.eventResponse(ctx, e)); err != nil {
				return err
			}
		}
	}
}

func (s *Server) eventResponse(ctx context.Context, e events.Event) *runtimeapi.ContainerEventResponse {
	resp := &runtimeapi.ContainerEventResponse{
		ContainerId:        e.ContainerID,
		ContainerEventType: runtimeapi.ContainerEventType(e.Type),
		CreatedAt:          e.Time.UnixNano(),
	}
	if ps, err := s.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: e.SandboxID}); err == nil {
		resp.PodSandboxStatus = ps.GetStatus()
	} else {
		// The pod is gone (its DELETED event): what identifies it still goes.
		resp.PodSandboxStatus = &runtimeapi.PodSandboxStatus{Id: e.SandboxID, State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}
	}
	cs, err := s.containers.List(container.Filter{SandboxID: e.SandboxID})
	if err == nil {
		for _, c := range cs {
			if st, err := s.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.ID}); err == nil {
				resp.ContainersStatuses = append(resp.ContainersStatuses, st.GetStatus())
			}
		}
	}
	return resp
}
