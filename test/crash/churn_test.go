package crash

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

// TestChurnWithKills is issue 6's churn acceptance: 8 clients create and
// delete 50 pods (every fifth is kept) while the daemon is SIGKILLed at
// random moments 10 times and restarted. Clients retry as the kubelet does.
// At the end every listed pod is consistent, the kept pods and their
// containers run, exactly their IPs are allocated, and once everything is
// removed nothing is left.
func TestChurnWithKills(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.Start()
	image := e.Pull()

	const pods, clients, kills = 50, 8, 10
	var active atomic.Int32
	active.Store(clients)
	var mu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	var startErrors atomic.Int32
	kept := map[string]string{} // pod id → container id
	next := make(chan int, pods)
	for i := range pods {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer active.Add(-1)
			for i := range next {
				podID, ctrID, err := e.churnPod(i, image, i%5 == 0, &startErrors)
				if err != nil {
					fail("pod %d: %v", i, err)
					continue
				}
				if i%5 == 0 {
					mu.Lock()
					kept[podID] = ctrID
					mu.Unlock()
				}
			}
		}()
	}

	var starts []time.Duration
	killsWhileBusy := 0
	for k := range kills {
		// A random fault schedule, not a wait for anything: the daemon is
		// killed at random points of the clients' work and stays down a
		// random while; nothing asserted depends on when.
		time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
		if active.Load() > 0 {
			killsWhileBusy++
		}
		e.Kill()
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		answered := e.Start()
		took := e.LastStartup()
		starts = append(starts, took)
		t.Logf("kill %d: daemon serving %v after its start, answering the client after %v", k+1, took.Round(time.Millisecond), answered.Round(time.Millisecond))
	}
	wg.Wait()
	sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
	t.Logf("%d kills, %d while clients were busy; start to serving: min %v, median %v, max %v; %d StartContainer attempts ended in an exited container",
		kills, killsWhileBusy, starts[0].Round(time.Millisecond), starts[len(starts)/2].Round(time.Millisecond), starts[len(starts)-1].Round(time.Millisecond), startErrors.Load())
	for _, f := range failures {
		t.Error(f)
	}

	e.checkConsistent()
	list, err := e.RS.ListPodSandbox(ctx(t), &cri.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != len(kept) {
		t.Errorf("%d pods listed, want the %d kept ones", len(list.Items), len(kept))
	}
	for _, p := range list.Items {
		ctrID, ok := kept[p.Id]
		if !ok {
			t.Errorf("pod %s (%s) listed but not kept by any client", p.Id, p.Metadata.Name)
			continue
		}
		if p.State != cri.PodSandboxState_SANDBOX_READY {
			t.Errorf("kept pod %s is %v", p.Id, p.State)
		}
		if ctrID != "" {
			if st := e.ContainerStatus(ctrID); st.State != cri.ContainerState_CONTAINER_RUNNING {
				t.Errorf("kept pod %s: container %s is %v", p.Id, ctrID, st.State)
			}
		}
	}
	if a := e.IPAMAllocations(); len(a) != len(list.Items) {
		t.Errorf("%d IPs allocated for %d pods: %v", len(a), len(list.Items), a)
	}
	if n := e.NetnsFiles(); len(n) != len(list.Items) {
		t.Errorf("%d netns files for %d pods", len(n), len(list.Items))
	}
	// A removed pod's monitor exits just after answering Shutdown; one left
	// by a kill mid-removal goes with recovery's cleanup.
	harness.Eventually(t, "one monitor per pod", 30*time.Second, func() error {
		if m := e.Monitors(); len(m) != len(list.Items) {
			return fmt.Errorf("%d monitors for %d pods: %w", len(m), len(list.Items), harness.ErrNotYet)
		}
		return nil
	})

	// A restart with the kept pods running, for the recovery time.
	e.Kill()
	e.Start()
	t.Logf("restart with %d running pods: daemon serving %v after its start", len(list.Items), e.LastStartup().Round(time.Millisecond))
	e.checkConsistent()

	e.RemoveAll()
	e.NoLeftovers()
}

// churnPod runs pod i with a container, retrying through daemon restarts as
// the kubelet would, and removes it again unless keep.
func (e *env) churnPod(i int, image string, keep bool, startErrors *atomic.Int32) (podID, ctrID string, err error) {
	deadline := time.Now().Add(4 * time.Minute)
	idx := strconv.Itoa(i)
	cfg := e.PodConfig("churn" + idx)
	cfg.Labels["idx"] = idx
	call := func(f func(context.Context) error) error {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return f(c)
	}
	retry := func(what string, f func() (bool, error)) error {
		var last error
		for time.Now().Before(deadline) {
			done, err := f()
			if done {
				return nil
			}
			last = err
			time.Sleep(200 * time.Millisecond)
		}
		return fmt.Errorf("%s: gave up: %v", what, last)
	}

	if err := retry("run pod", func() (bool, error) {
		err := call(func(c context.Context) error {
			r, err := e.RS.RunPodSandbox(c, &cri.RunPodSandboxRequest{Config: cfg})
			if err == nil {
				podID = r.PodSandboxId
			}
			return err
		})
		if err == nil {
			return true, nil
		}
		// An earlier attempt may have finished before the daemon died.
		var found *cri.PodSandbox
		_ = call(func(c context.Context) error {
			r, err := e.RS.ListPodSandbox(c, &cri.ListPodSandboxRequest{Filter: &cri.PodSandboxFilter{LabelSelector: map[string]string{"idx": idx}}})
			if err == nil && len(r.Items) > 0 {
				found = r.Items[0]
			}
			return err
		})
		if found != nil && found.State == cri.PodSandboxState_SANDBOX_READY {
			podID = found.Id
			return true, nil
		}
		return false, err
	}); err != nil {
		return "", "", err
	}

	ccfg := harness.ContainerConfig("app", image, "sleep", "3600")
	ccfg.Labels = map[string]string{"idx": idx}
	if err := retry("create container", func() (bool, error) {
		err := call(func(c context.Context) error {
			r, err := e.RS.CreateContainer(c, &cri.CreateContainerRequest{PodSandboxId: podID, Config: ccfg, SandboxConfig: cfg})
			if err == nil {
				ctrID = r.ContainerId
			}
			return err
		})
		if err == nil {
			return true, nil
		}
		var found string
		_ = call(func(c context.Context) error {
			r, err := e.RS.ListContainers(c, &cri.ListContainersRequest{Filter: &cri.ContainerFilter{PodSandboxId: podID}})
			if err == nil && len(r.Containers) > 0 {
				found = r.Containers[0].Id
			}
			return err
		})
		if found != "" {
			ctrID = found
			return true, nil
		}
		return false, err
	}); err != nil {
		return podID, "", err
	}

	if err := retry("start container", func() (bool, error) {
		err := call(func(c context.Context) error {
			_, err := e.RS.StartContainer(c, &cri.StartContainerRequest{ContainerId: ctrID})
			return err
		})
		if err == nil {
			return true, nil
		}
		var state cri.ContainerState = -1
		_ = call(func(c context.Context) error {
			r, err := e.RS.ContainerStatus(c, &cri.ContainerStatusRequest{ContainerId: ctrID})
			if err == nil {
				state = r.Status.State
			}
			return err
		})
		switch state {
		case cri.ContainerState_CONTAINER_RUNNING:
			return true, nil
		case cri.ContainerState_CONTAINER_EXITED:
			// The start failed for good (the daemon died under it); the
			// kubelet would make a new container. Not an inconsistency.
			startErrors.Add(1)
			if keep {
				ctrID = ""
			}
			return true, nil
		}
		return false, err
	}); err != nil {
		return podID, ctrID, err
	}
	if keep {
		return podID, ctrID, nil
	}
	// A pod lives a moment, so the churn spans the daemon's kills.
	time.Sleep(time.Duration(rand.IntN(800)) * time.Millisecond)

	err = retry("remove pod", func() (bool, error) {
		err := call(func(c context.Context) error {
			if _, err := e.RS.StopPodSandbox(c, &cri.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
				return err
			}
			_, err := e.RS.RemovePodSandbox(c, &cri.RemovePodSandboxRequest{PodSandboxId: podID})
			return err
		})
		return err == nil, err
	})
	return podID, ctrID, err
}
