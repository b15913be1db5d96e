package network

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestNetNSGone: the pinned netns file is deleted behind the runtime's back
// (as a reboot does) → StopPodSandbox and RemovePodSandbox still succeed and
// release the IP, from the cached result.
func TestNetNSGone(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.WriteNetConf(e.BridgePlugin(), portmapPlugin())
	e.Start()
	cfg := e.podConfig("reboot", func(c *cri.PodSandboxConfig) {
		c.PortMappings = []*cri.PortMapping{{Protocol: cri.Protocol_TCP, ContainerPort: 80, HostPort: 28080}}
	})
	id := e.RunPod(cfg)
	if a := e.IPAMAllocations(); len(a) != 1 {
		t.Fatalf("allocations after run: %v", a)
	}
	path := filepath.Join(e.State, "netns", id)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
		t.Fatalf("unpin %s: %v", path, err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := e.StopPod(id); err != nil {
		t.Fatalf("StopPodSandbox with the netns gone: %v", err)
	}
	if a := e.IPAMAllocations(); len(a) != 0 {
		t.Errorf("allocations after stop: %v", a)
	}
	if err := e.RemovePod(id); err != nil {
		t.Fatalf("RemovePodSandbox with the netns gone: %v", err)
	}
	e.noPods()
	e.NoLeftovers()
}

// TestDELAfterRestartWithCacheLost: the daemon restarts and libcni's own
// result cache is gone; DEL still gets the ADD's result and arguments from
// the sandbox record, so portmap removes its rules and host-local the IP.
func TestDELAfterRestartWithCacheLost(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.WriteNetConf(e.BridgePlugin(), portmapPlugin())
	e.Start()
	cfg := e.podConfig("restart", func(c *cri.PodSandboxConfig) {
		c.PortMappings = []*cri.PortMapping{{Protocol: cri.Protocol_TCP, ContainerPort: 80, HostPort: 28081}}
	})
	id := e.RunPod(cfg)
	ip := e.PodStatus(id).Status.Network.Ip

	if err := e.Stop(); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	cache := filepath.Join(e.Root, "cni")
	if _, err := os.Stat(filepath.Join(cache, "results")); err != nil {
		t.Fatalf("libcni cache not where expected: %v", err)
	}
	if err := os.RemoveAll(cache); err != nil {
		t.Fatal(err)
	}
	e.Start()
	if got := e.PodStatus(id).Status.Network.Ip; got != ip {
		t.Errorf("pod IP after restart %q, want %q", got, ip)
	}
	if err := e.StopPod(id); err != nil {
		t.Fatalf("StopPodSandbox after restart: %v", err)
	}
	if err := e.RemovePod(id); err != nil {
		t.Fatalf("RemovePodSandbox after restart: %v", err)
	}
	e.noPods()
	e.NoLeftovers()
}
