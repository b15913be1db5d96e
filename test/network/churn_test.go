package network

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestPodChurn: 100 pods created and removed by 8 concurrent clients. Every
// pod gets a unique IP (host-local hands addresses out round-robin over the
// /24, so none repeats in 100), and afterwards the host-local store, netns
// dir, veths and nat table are as they were. Half the pods have a host port,
// so portmap's per-pod chains come and go too.
func TestPodChurn(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.WriteNetConf(e.BridgePlugin(), portmapPlugin())
	e.Start()
	ipamBefore, netnsBefore, vethsBefore := e.IPAMAllocations(), e.NetnsFiles(), e.VethsOnBridge()

	const pods, clients = 100, 8
	results := make([]churnResult, pods)
	next := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i] = e.churnOne(i)
			}
		}()
	}
	for i := range pods {
		next <- i
	}
	close(next)
	wg.Wait()
	took := time.Since(start)

	seen := map[string]int{}
	var withPM, withoutPM []time.Duration
	for i, r := range results {
		if r.err != nil {
			t.Errorf("pod %d: %v", i, r.err)
			continue
		}
		if j, dup := seen[r.ip]; dup {
			t.Errorf("pods %d and %d both got IP %s", j, i, r.ip)
		}
		seen[r.ip] = i
		if !e.Subnet.Contains(net.ParseIP(r.ip)) {
			t.Errorf("pod %d IP %s not in %s", i, r.ip, e.Subnet)
		}
		if r.hostPort {
			withPM = append(withPM, r.run)
		} else {
			withoutPM = append(withoutPM, r.run)
		}
	}
	t.Logf("%d pods run+stop+remove by %d clients in %v; RunPodSandbox p50/p90 with portmap %v/%v, without %v/%v",
		pods, clients, took.Round(time.Millisecond), pct(withPM, 50), pct(withPM, 90), pct(withoutPM, 50), pct(withoutPM, 90))

	e.noPods()
	e.NoLeftovers()
	if a := e.IPAMAllocations(); !slices.Equal(a, ipamBefore) {
		t.Errorf("host-local store %v, was %v", a, ipamBefore)
	}
	if n := e.NetnsFiles(); !slices.Equal(n, netnsBefore) {
		t.Errorf("netns dir %v, was %v", n, netnsBefore)
	}
	if v := e.VethsOnBridge(); !slices.Equal(v, vethsBefore) {
		t.Errorf("veths on the bridge %v, were %v", v, vethsBefore)
	}
}

type churnResult struct {
	ip       string
	run      time.Duration // RunPodSandbox latency, reported not asserted
	hostPort bool
	err      error
}

// churnOne runs, checks, stops and removes pod i.
func (e *env) churnOne(i int) (r churnResult) {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := e.podConfig(fmt.Sprintf("churn-%03d", i))
	if i%2 == 0 {
		r.hostPort = true
		cfg.PortMappings = []*cri.PortMapping{{Protocol: cri.Protocol_TCP, ContainerPort: 80, HostPort: int32(31000 + i)}}
	}
	t0 := time.Now()
	run, err := e.RS.RunPodSandbox(c, &cri.RunPodSandboxRequest{Config: cfg})
	r.run = time.Since(t0)
	if err != nil {
		r.err = fmt.Errorf("RunPodSandbox: %w", err)
		return r
	}
	st, err := e.RS.PodSandboxStatus(c, &cri.PodSandboxStatusRequest{PodSandboxId: run.PodSandboxId})
	if err != nil {
		r.err = fmt.Errorf("PodSandboxStatus: %w", err)
		return r
	}
	if st.Status.State != cri.PodSandboxState_SANDBOX_READY {
		r.err = fmt.Errorf("pod is %v", st.Status.State)
	}
	r.ip = st.Status.GetNetwork().GetIp()
	if _, err := e.RS.StopPodSandbox(c, &cri.StopPodSandboxRequest{PodSandboxId: run.PodSandboxId}); err != nil {
		r.err = fmt.Errorf("StopPodSandbox: %w", err)
		return r
	}
	if _, err := e.RS.RemovePodSandbox(c, &cri.RemovePodSandboxRequest{PodSandboxId: run.PodSandboxId}); err != nil {
		r.err = fmt.Errorf("RemovePodSandbox: %w", err)
	}
	return r
}

// pct is the p-th percentile of ds (nearest rank).
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)].Round(time.Millisecond)
}
