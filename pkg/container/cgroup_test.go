package container

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// A pod resize is checked here and written by the sandbox manager: a name
// that would be a path outside the cgroup never reaches it.
func TestUpdatePodResources(t *testing.T) {
	sbs := &fakeSandboxes{}
	m := &Manager{sandboxes: sbs}
	r := &Resources{CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 256 << 20, HugepageLimits: map[string]uint64{"2MB": 4 << 20}}
	if err := m.UpdatePodResources(context.Background(), "pod", r); err != nil {
		t.Fatal(err)
	}
	want := sandbox.Resources{CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 256 << 20}
	if len(sbs.resized) != 1 || !reflect.DeepEqual(*sbs.resized[0], want) {
		t.Fatalf("resized %+v, want %+v (no hugetlb controller: no hugepages)", sbs.resized, want)
	}
	m.hugetlb = true
	if err := m.UpdatePodResources(context.Background(), "pod", r); err != nil {
		t.Fatal(err)
	}
	if got := sbs.resized[1].HugepageLimits; !reflect.DeepEqual(got, r.HugepageLimits) {
		t.Fatalf("hugepages = %v, want %v", got, r.HugepageLimits)
	}
	for _, bad := range []*Resources{
		{Unified: map[string]string{"../../escape": "1"}},
		{HugepageLimits: map[string]uint64{"2MB/../x": 1}},
	} {
		if err := m.UpdatePodResources(context.Background(), "pod", bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("UpdatePodResources(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	if len(sbs.resized) != 2 {
		t.Fatalf("refused resizes reached the sandbox manager: %+v", sbs.resized[2:])
	}
}
