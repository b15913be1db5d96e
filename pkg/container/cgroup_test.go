package container

import (
	"reflect"
	"testing"
)

func TestExpandSlice(t *testing.T) {
	for in, want := range map[string]string{
		"kubepods.slice":                "/kubepods.slice",
		"kubepods-burstable-pod1.slice": "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice",
		"-.slice":                       "/",
	} {
		if got, err := expandSlice(in); err != nil || got != want {
			t.Errorf("expandSlice(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"kubepods", "a--b.slice", "a/b.slice", ".slice"} {
		if _, err := expandSlice(bad); err == nil {
			t.Errorf("expandSlice(%q) accepted", bad)
		}
	}
	if got, _ := podCgroupPath("systemd", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podx.slice"); got != "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podx.slice" {
		t.Errorf("podCgroupPath systemd = %q", got)
	}
	if got, _ := podCgroupPath("cgroupfs", "kubepods/podx"); got != "/kubepods/podx" {
		t.Errorf("podCgroupPath cgroupfs = %q", got)
	}
}

func TestCgroupV2Writes(t *testing.T) {
	r := &Resources{CPUShares: 1024, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 64 << 20, MemorySwapLimit: 96 << 20,
		CpusetCPUs: "0-1", HugepageLimits: map[string]uint64{"2MB": 4 << 20}, Unified: map[string]string{"pids.max": "100"}}
	want := []cgroupWrite{
		{"", "cpu.weight", "39"},
		{"", "cpu.max", "50000 100000"},
		{"", "cpuset.cpus", "0-1"},
		{"", "memory.max", "67108864"},
		{"", "memory.swap.max", "33554432"},
		{"", "hugetlb.2MB.max", "4194304"},
		{"", "pids.max", "100"},
	}
	if got := cgroupV2Writes(r); !reflect.DeepEqual(got, want) {
		t.Errorf("v2 writes =\n%v\nwant\n%v", got, want)
	}
	if got := cgroupV2Writes(&Resources{CPUPeriod: 50000}); !reflect.DeepEqual(got, []cgroupWrite{{"", "cpu.max", "max 50000"}}) {
		t.Errorf("period only = %v", got)
	}
	if w := sharesToWeight(2); w != 1 {
		t.Errorf("weight(2) = %d", w)
	}
	if w := sharesToWeight(262144); w != 10000 {
		t.Errorf("weight(262144) = %d", w)
	}
}

func TestCgroupV1Writes(t *testing.T) {
	r := &Resources{CPUShares: 512, CPUQuota: 20000, MemoryLimit: 32 << 20, MemorySwapLimit: 32 << 20}
	want := []cgroupWrite{
		{"cpu", "cpu.shares", "512"},
		{"cpu", "cpu.cfs_quota_us", "20000"},
		{"memory", "memory.memsw.limit_in_bytes", "-1"},
		{"memory", "memory.limit_in_bytes", "33554432"},
		{"memory", "memory.memsw.limit_in_bytes", "33554432"},
	}
	if got := cgroupV1Writes(r); !reflect.DeepEqual(got, want) {
		t.Errorf("v1 writes =\n%v\nwant\n%v", got, want)
	}
}
