package streaming

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

// TestEvents subscribes twice, runs a pod lifecycle and checks the exact
// event sequence and the statuses each event carries.
func TestEvents(t *testing.T) {
	requireHost(t)
	d := startDaemon(t)
	_, ref := registry(t)
	d.Crictl("pull", ref)
	rs, _ := d.Client()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	subA, err := rs.GetContainerEvents(ctx, &cri.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	subB, err := rs.GetContainerEvents(ctx, &cri.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// A subscription only sees what happens once the daemon has registered
	// it, and the client's call returns before that: make marker pods until
	// each stream has seen one, then the real lifecycle is seen whole. The
	// markers' own events are skipped below.
	streams := []<-chan recvResult{pump(subA), pump(subB)}
	markers := map[string]bool{}
	live := make([]bool, len(streams))
	harness.Eventually(t, "both subscriptions receive events", time.Minute, func() error {
		id, _ := d.CrictlRunPod(fmt.Sprintf("ev-marker-%d", len(markers)))
		markers[id] = true
		for i, ch := range streams {
			for !live[i] {
				r, err := recvFrom(ch, 5*time.Second)
				if err != nil {
					return fmt.Errorf("stream %d: %w", i, err)
				}
				live[i] = markers[r.ContainerId]
			}
		}
		return nil
	})

	pod, podCfg := d.CrictlRunPod("ev")
	ctr := d.CrictlStartContainer(pod, d.ContainerConfigFile("ev", ref, "sh", "-c", "sleep 1; exit 3"), podCfg)
	// The container exits on its own: STOPPED must come without an RPC.
	harness.Eventually(t, "container exits", 30*time.Second, func() error {
		var cs containerStatusJSON
		d.CrictlJSON(&cs, "inspect", "-o", "json", ctr)
		if cs.Status.State != "CONTAINER_EXITED" {
			return fmt.Errorf("state %s", cs.Status.State)
		}
		return nil
	})
	d.Crictl("rm", ctr)
	d.Crictl("stopp", pod)
	d.Crictl("rmp", pod)

	want := []string{
		"CONTAINER_CREATED_EVENT " + pod, "CONTAINER_STARTED_EVENT " + pod,
		"CONTAINER_CREATED_EVENT " + ctr, "CONTAINER_STARTED_EVENT " + ctr,
		"CONTAINER_STOPPED_EVENT " + ctr, "CONTAINER_DELETED_EVENT " + ctr,
		"CONTAINER_STOPPED_EVENT " + pod, "CONTAINER_DELETED_EVENT " + pod,
	}
	for _, ch := range streams {
		// Every RPC above has returned, so every event is published: one
		// that is missing fails the test now instead of holding Recv until
		// the stream's 2 minutes run out (how a failure took 122 s).
		var got []string
		for len(got) < len(want) {
			e, err := recvFrom(ch, 15*time.Second)
			if err != nil {
				t.Fatalf("after %v: %v", got, err)
			}
			if markers[e.ContainerId] {
				continue
			}
			got = append(got, e.ContainerEventType.String()+" "+e.ContainerId)
			ps := e.GetPodSandboxStatus()
			if ps.GetId() != pod {
				t.Errorf("%s: pod_sandbox_status id %q", got[len(got)-1], ps.GetId())
			}
			switch {
			case e.ContainerId == ctr && e.ContainerEventType != cri.ContainerEventType_CONTAINER_DELETED_EVENT:
				if len(e.ContainersStatuses) != 1 || e.ContainersStatuses[0].Id != ctr {
					t.Errorf("%s: containers_statuses %v", got[len(got)-1], e.ContainersStatuses)
				} else if st := e.ContainersStatuses[0].State; e.ContainerEventType == cri.ContainerEventType_CONTAINER_STOPPED_EVENT && st != cri.ContainerState_CONTAINER_EXITED {
					t.Errorf("STOPPED event carries state %s", st)
				}
				if ps.GetMetadata().GetName() != "ev" {
					t.Errorf("%s: pod status without metadata: %v", got[len(got)-1], ps)
				}
			case e.ContainerId == ctr:
				if len(e.ContainersStatuses) != 0 {
					t.Errorf("DELETED container still listed: %v", e.ContainersStatuses)
				}
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

type recvResult struct {
	e   *cri.ContainerEventResponse
	err error
}

// pump receives from sub in one goroutine (a stream's Recv must not be
// called from two at once) until the stream ends (the test's context).
func pump(sub cri.RuntimeService_GetContainerEventsClient) <-chan recvResult {
	ch := make(chan recvResult, 64)
	go func() {
		for {
			e, err := sub.Recv()
			ch <- recvResult{e, err}
			if err != nil {
				close(ch)
				return
			}
		}
	}()
	return ch
}

// recvFrom is the next event of a pumped stream, an error if none comes
// within d.
func recvFrom(ch <-chan recvResult, d time.Duration) (*cri.ContainerEventResponse, error) {
	select {
	case r, ok := <-ch:
		if !ok {
			return nil, fmt.Errorf("stream ended")
		}
		return r.e, r.err
	case <-time.After(d):
		return nil, fmt.Errorf("no event within %v", d)
	}
}
