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
	time.Sleep(300 * time.Millisecond) // let both subscriptions register (no assertion on timing)

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
	for _, sub := range []cri.RuntimeService_GetContainerEventsClient{subA, subB} {
		// Every RPC above has returned, so every event is published: one
		// that is missing fails the test now instead of holding Recv until
		// the stream's 2 minutes run out (how a failure took 122 s).
		recv := recvWithin(sub, 15*time.Second)
		var got []string
		for len(got) < len(want) {
			e, err := recv()
			if err != nil {
				t.Fatalf("after %v: %v", got, err)
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

// recvWithin returns a Recv for sub that gives up after d without an event.
func recvWithin(sub cri.RuntimeService_GetContainerEventsClient, d time.Duration) func() (*cri.ContainerEventResponse, error) {
	type res struct {
		e   *cri.ContainerEventResponse
		err error
	}
	ch := make(chan res, 1)
	return func() (*cri.ContainerEventResponse, error) {
		go func() {
			e, err := sub.Recv()
			ch <- res{e, err}
		}()
		select {
		case r := <-ch:
			return r.e, r.err
		case <-time.After(d):
			return nil, fmt.Errorf("no event within %v", d)
		}
	}
}
