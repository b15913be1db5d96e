package cri

import (
	"testing"

	"github.com/pod-shim/pod-shim/pkg/stats"
)

// A pod whose netns has lost its interfaces must report no network stats:
// kubelet v1.37 (PodAndContainerStatsFromCRI) dereferences DefaultInterface
// whenever Network is set, and panicked on a cluster here.
func TestNetworkUsage(t *testing.T) {
	if n := networkUsage(nil); n != nil {
		t.Errorf("no interfaces gave %+v, want nil", n)
	}
	n := networkUsage([]stats.Interface{{Name: "lo", RxBytes: 1}, {Name: "eth0", RxBytes: 7}})
	if n == nil || n.DefaultInterface == nil || n.DefaultInterface.Name != "eth0" || n.DefaultInterface.RxBytes.GetValue() != 7 {
		t.Errorf("eth0 is not the default interface: %+v", n)
	}
	if n := networkUsage([]stats.Interface{{Name: "net1"}}); n == nil || n.DefaultInterface.GetName() != "net1" {
		t.Errorf("the only interface is not the default: %+v", n)
	}
}
