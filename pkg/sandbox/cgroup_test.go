package sandbox

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
)

func TestPodLimits(t *testing.T) {
	res := &Resources{CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 512, MemoryLimit: 64 << 20}
	over := &Resources{CPUPeriod: 50000, CPUQuota: 5000, CPUShares: 10, MemoryLimit: 8 << 20}
	tests := []struct {
		name     string
		res, ovr *Resources
		want     *cgroups.Resources
	}{
		{name: "nothing", want: &cgroups.Resources{SkipDevices: true}},
		{name: "overhead alone limits nothing but shares", ovr: over,
			want: &cgroups.Resources{CpuShares: 10, SkipDevices: true}},
		{name: "sum, overhead quota scaled to the pod's period", res: res, ovr: over,
			want: &cgroups.Resources{Memory: 75497472, CpuShares: 522, CpuPeriod: 100000, CpuQuota: 60000, SkipDevices: true}},
		{name: "default period", res: &Resources{CPUQuota: 20000},
			want: &cgroups.Resources{CpuPeriod: 100000, CpuQuota: 20000, SkipDevices: true}},
		{name: "swap grows with the overhead's memory",
			res: &Resources{MemoryLimit: 100, MemorySwapLimit: 200}, ovr: &Resources{MemoryLimit: 10},
			want: &cgroups.Resources{Memory: 110, MemorySwap: 210, SkipDevices: true}},
		{name: "hugepages in size order, cpuset and unified pass through",
			res: &Resources{HugepageLimits: map[string]uint64{"2MB": 4 << 20, "1GB": 1 << 30}, CpusetCPUs: "0-1", CpusetMems: "0", Unified: map[string]string{"memory.high": "1000000"}},
			want: &cgroups.Resources{
				HugetlbLimit: []*cgroups.HugepageLimit{{Pagesize: "1GB", Limit: 1 << 30}, {Pagesize: "2MB", Limit: 4 << 20}},
				CpusetCpus:   "0-1", CpusetMems: "0", Unified: map[string]string{"memory.high": "1000000"}, SkipDevices: true,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := podCgroupResources(podLimits(tt.res, tt.ovr))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestPodCgroupParent(t *testing.T) {
	tests := []struct {
		driver, parent, want string
		wantErr              bool
	}{
		{"cgroupfs", "kubepods/burstable/pod1", "/kubepods/burstable/pod1", false},
		{"cgroupfs", "/kubepods/../x", "/x", false},
		{"cgroupfs", "", "", true},
		{"systemd", "kubepods-burstable-pod1.slice", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice", false},
		{"systemd", "/kubepods.slice/kubepods-burstable.slice", "/kubepods.slice/kubepods-burstable.slice", false},
		{"systemd", "-.slice", "/", false},
		{"systemd", "a--b.slice", "", true},
		{"systemd", "notaslice", "", true},
	}
	for _, tt := range tests {
		got, err := podCgroupParent(tt.driver, tt.parent)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("podCgroupParent(%s, %q) = %q, %v; want %q (error %v)", tt.driver, tt.parent, got, err, tt.want, tt.wantErr)
		}
	}
}

// fakeCgroup records what reaches the library's manager.
type fakeCgroup struct {
	cgroups.Manager // nil: any other call panics
	path            string
	applied         []int
	set             *cgroups.Resources
}

func (f *fakeCgroup) Apply(pid int) error { f.applied = append(f.applied, pid); return nil }

func (f *fakeCgroup) Set(r *cgroups.Resources) error { f.set = r; return nil }

// A resize reaches the pod's cgroup, with the pod's overhead, only for a
// ready pod, and locks the pod like every other change to it.
func TestUpdateResources(t *testing.T) {
	var got *fakeCgroup
	old := cgroupManager
	cgroupManager = func(c *cgroups.Cgroup) (cgroups.Manager, error) {
		if len(c.Resources.Unified) > 0 {
			return nil, cgroups.ErrV1NoUnified
		}
		got = &fakeCgroup{path: c.Path}
		return got, nil
	}
	t.Cleanup(func() { cgroupManager = old })
	env := newTestEnv(t, nil)
	cfg := podConfig("resized")
	cfg.CgroupParent = "kubepods/pod1"
	cfg.Overhead = &Resources{MemoryLimit: 1 << 20}
	sb, err := env.m.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	if err := env.m.UpdateResources(context.Background(), sb.ID, &Resources{CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 256 << 20}); err != nil {
		t.Fatal(err)
	}
	if got == nil || got.path != "/kubepods/pod1" || !reflect.DeepEqual(got.applied, []int{-1}) {
		t.Fatalf("cgroup = %+v, want /kubepods/pod1 made without a process", got)
	}
	if got.set.Memory != 256<<20+1<<20 || got.set.CpuQuota != 50000 || !got.set.SkipDevices {
		t.Fatalf("set %+v, want the resize plus the overhead, devices untouched", got.set)
	}
	err = env.m.UpdateResources(context.Background(), sb.ID, &Resources{Unified: map[string]string{"memory.high": "1"}})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("unified on v1 = %v, want ErrInvalid", err)
	}
	if err := env.m.Stop(context.Background(), sb.ID); err != nil {
		t.Fatal(err)
	}
	if err := env.m.UpdateResources(context.Background(), sb.ID, &Resources{CPUShares: 2}); !errors.Is(err, ErrNotReady) {
		t.Fatalf("resize of a stopped pod = %v, want ErrNotReady", err)
	}
	if err := env.m.UpdateResources(context.Background(), "feedbeef", &Resources{CPUShares: 2}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("resize of an unknown pod = %v, want ErrNotFound", err)
	}
}

// Two pods starting at once never use the cgroup library at the same time:
// its v1 controllers are shared by every manager in the process and cache
// state unlocked (a data race under -race, seen with two pods in one kubelet
// sync). The fake's Set waits for a second Set to overlap it; with the lock
// none can, and the wait ends by its timeout.
func TestSetPodCgroupIsSerialised(t *testing.T) {
	var inside, overlaps atomic.Int32
	entered := make(chan struct{}, 8)
	old := cgroupManager
	cgroupManager = func(c *cgroups.Cgroup) (cgroups.Manager, error) {
		return &overlapCgroup{inside: &inside, overlaps: &overlaps, entered: entered}, nil
	}
	t.Cleanup(func() { cgroupManager = old })
	m := &Manager{}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			if err := m.setPodCgroup(fmt.Sprintf("kubepods/pod%d", i), Resources{CPUShares: 2}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := overlaps.Load(); n != 0 {
		t.Fatalf("%d Set calls overlapped another; the library must be used by one pod at a time", n)
	}
}

type overlapCgroup struct {
	cgroups.Manager
	inside, overlaps *atomic.Int32
	entered          chan struct{}
}

func (f *overlapCgroup) Apply(int) error { return nil }

func (f *overlapCgroup) Set(*cgroups.Resources) error {
	if f.inside.Add(1) > 1 {
		f.overlaps.Add(1)
	}
	defer f.inside.Add(-1)
	f.entered <- struct{}{}
	// Give the other pod the chance to come in: it does at once unless
	// something keeps it out.
	deadline := time.After(200 * time.Millisecond)
	for len(f.entered) < 2 {
		select {
		case <-deadline:
			return nil
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}
