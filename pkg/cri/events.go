package cri

import (
	"context"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/pkg/container"
	"github.com/pod-shim/pod-shim/pkg/events"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// lifecycle turns state changes of containers and sandboxes into events by
// diffing the store against the last snapshot. One diff covers every way a
// state changes (an RPC, a container exiting on its own, a pod stop taking
// its containers with it), so the domain packages need no event hooks. A
// diff runs right after each lifecycle RPC, and every pollInterval while
// anyone subscribes, to catch exits nobody asked for.
type lifecycle struct {
	broker *events.Broker
	s      *Server

	mu         sync.Mutex // serialises diffs, so events keep their order
	primed     bool
	containers map[string]snap
	sandboxes  map[string]snap

	kick chan struct{}
}

type snap struct {
	sandbox string
	state   string
}

const pollInterval = time.Second

func newLifecycle(s *Server, b *events.Broker) *lifecycle {
	return &lifecycle{broker: b, s: s, kick: make(chan struct{}, 1)}
}

// reconcile publishes the changes since the last call.
func (l *lifecycle) reconcile() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.broker.Subscribers() == 0 {
		// Nobody listens: the next subscriber starts from a fresh baseline.
		l.primed = false
		return
	}
	cs, err := l.s.containers.List(container.Filter{})
	if err != nil {
		l.s.log.Debug("events: list containers", "error", err)
		return
	}
	sbs, err := l.s.sandboxes.List(sandbox.Filter{})
	if err != nil {
		l.s.log.Debug("events: list sandboxes", "error", err)
		return
	}
	nc := make(map[string]snap, len(cs))
	for _, c := range cs {
		nc[c.ID] = snap{sandbox: c.SandboxID, state: string(c.State)}
	}
	ns := make(map[string]snap, len(sbs))
	for _, sb := range sbs {
		if sb.State == sandbox.StateCreating {
			continue
		}
		ns[sb.ID] = snap{sandbox: sb.ID, state: string(sb.State)}
	}
	if l.primed {
		now := time.Now()
		// Pods before their containers when they appear, after when they go.
		l.diff(l.sandboxes, ns, sandboxSteps, now, false)
		l.diff(l.containers, nc, containerSteps, now, false)
		l.diff(l.containers, nc, containerSteps, now, true)
		l.diff(l.sandboxes, ns, sandboxSteps, now, true)
	}
	l.containers, l.sandboxes, l.primed = nc, ns, true
}

// steps maps a state to how far along the lifecycle it is: created 1,
// started 2, stopped 3.
type steps func(state string) int

func containerSteps(state string) int {
	switch container.State(state) {
	case container.StateCreated:
		return 1
	case container.StateRunning:
		return 2
	case container.StateExited:
		return 3
	}
	return 0
}

func sandboxSteps(state string) int {
	switch sandbox.State(state) {
	case sandbox.StateReady:
		return 2
	case sandbox.StateNotReady:
		return 3
	}
	return 0
}

// diff publishes the transitions from old to cur: with gone false the
// creations and state changes, with gone true the deletions.
func (l *lifecycle) diff(old, cur map[string]snap, st steps, now time.Time, gone bool) {
	if gone {
		for id, o := range old {
			if _, ok := cur[id]; !ok {
				// Started and gone before a diff saw it stop (a quick exit
				// then a remove): it did stop, and the PLEG needs to know.
				if step := st(o.state); step == 2 {
					l.broker.Publish(events.Event{ContainerID: id, SandboxID: o.sandbox, Type: events.Stopped, Time: now})
				}
				l.broker.Publish(events.Event{ContainerID: id, SandboxID: o.sandbox, Type: events.Deleted, Time: now})
			}
		}
		return
	}
	for id, c := range cur {
		from := 0
		if o, ok := old[id]; ok {
			from = st(o.state)
		}
		to := st(c.state)
		for step := from + 1; step <= to; step++ {
			l.broker.Publish(events.Event{ContainerID: id, SandboxID: c.sandbox, Type: events.Type(step - 1), Time: now})
		}
	}
}

// run polls while anyone subscribes; it ends with ctx.
func (l *lifecycle) run(ctx context.Context) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-l.kick:
		}
		l.reconcile()
	}
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
		s.lifecycle.reconcile()
	}
	resp, err := h(ctx, req)
	if diff {
		s.lifecycle.reconcile()
	}
	return resp, err
}

// GetContainerEvents streams lifecycle events, each with the pod's status
// and the statuses of all its containers as they are when it is sent.
func (s *Server) GetContainerEvents(r *runtimeapi.GetEventsRequest, stream grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	if s.lifecycle == nil {
		return unavailable("events")
	}
	sub := s.lifecycle.broker.Subscribe(events.DefaultBuffer)
	defer sub.Close()
	// Baseline now, so what happens from here on is reported.
	s.lifecycle.reconcile()
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
