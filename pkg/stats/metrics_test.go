package stats

import "testing"

// Every metric built from a full sample has a descriptor with as many label
// keys as it has values, and every described metric is produced.
func TestMetricsMatchDescriptors(t *testing.T) {
	m := NewMetricSet("id", "c", "busybox")
	psi := &PSI{Some: PSILine{Total: 5}, Full: PSILine{Total: 3}}
	m.Cgroup(&Cgroup{HasCPU: true, CPUUsageNanos: 10, HasMemory: true, MemoryUsage: 4096, HasPids: true, Pids: 2, CPUPSI: psi, MemoryPSI: psi, IOPSI: psi})
	m.Extra(&Extra{
		HasCPUStat: true, CPUUserNanos: 6, CPUSysNanos: 4, CPUQuota: 20000, CPUPeriod: 100000, CPUShares: 1024,
		HasMemory: true, MemoryLimit: 64 << 20, HasThreads: true, Threads: 3,
		Blkio:   []BlkioStat{{Major: 8, Minor: 0, Op: "Read", Bytes: 4096, Ops: 1}, {Major: 8, Minor: 0, Op: "Write", Bytes: 8192, Ops: 2}},
		HugeTLB: []HugeTLBStat{{PageSize: "2MB"}},
	}, ProcStats{FDs: 3, Sockets: 1, MaxOpenFiles: 1024}, func(_, _ uint64) string { return "/dev/sda" })
	m.Network([]Interface{{Name: "eth0", RxBytes: 1}})
	for _, n := range []string{"container_last_seen", "container_start_time_seconds"} {
		m.Add(n, 1)
	}
	for _, n := range []string{"container_fs_usage_bytes", "container_fs_limit_bytes", "container_fs_inodes_total", "container_fs_inodes_free"} {
		m.Add(n, 1, "/dev/sda")
	}
	keys := map[string]int{}
	for _, d := range MetricDefs {
		keys[d.Name] = len(BaseLabels) + len(d.Extra)
	}
	seen := map[string]bool{}
	for _, mt := range m.Metrics {
		n, ok := keys[mt.Name]
		if !ok {
			t.Errorf("%s has no descriptor", mt.Name)
			continue
		}
		if n != len(mt.Labels) {
			t.Errorf("%s: %d label values %v, descriptor has %d keys", mt.Name, len(mt.Labels), mt.Labels, n)
		}
		seen[mt.Name] = true
	}
	for name := range keys {
		if !seen[name] {
			t.Errorf("%s described but never produced", name)
		}
	}
}
