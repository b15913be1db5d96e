package sandbox

import (
	"reflect"
	"testing"
)

func TestPodCgroupFiles(t *testing.T) {
	res := &Resources{CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 512, MemoryLimit: 64 << 20}
	over := &Resources{CPUPeriod: 50000, CPUQuota: 5000, CPUShares: 10, MemoryLimit: 8 << 20}
	tests := []struct {
		name     string
		res, ovr *Resources
		v2       bool
		want     []cgroupFile
	}{
		{name: "nothing", want: nil},
		{name: "overhead alone limits nothing but shares", ovr: over, want: []cgroupFile{{"cpu", "cpu.shares", "10"}}},
		{name: "v1 sum", res: res, ovr: over, want: []cgroupFile{
			{"memory", "memory.limit_in_bytes", "75497472"},
			{"cpu", "cpu.shares", "522"},
			{"cpu", "cpu.cfs_period_us", "100000"},
			{"cpu", "cpu.cfs_quota_us", "60000"},
		}},
		{name: "v2 sum", res: res, ovr: over, v2: true, want: []cgroupFile{
			{"", "memory.max", "75497472"},
			{"", "cpu.weight", "20"},
			{"", "cpu.max", "60000 100000"},
		}},
		{name: "default period", res: &Resources{CPUQuota: 20000}, want: []cgroupFile{
			{"cpu", "cpu.cfs_period_us", "100000"},
			{"cpu", "cpu.cfs_quota_us", "20000"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := podCgroupFiles(podLimits(tt.res, tt.ovr), tt.v2)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
		})
	}
}
