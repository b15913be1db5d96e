package cri

import (
	"testing"

	"github.com/pod-shim/pod-shim/pkg/stats"
)

// The names critest v1.37 (pkg/validate/pod.go) expects of ListMetricDescriptors:
// the kubelet's cadvisor metrics on Kubernetes 1.37.
var critestMetricNames = []string{
	"container_blkio_device_usage_total", "container_cpu_cfs_periods_total", "container_cpu_cfs_throttled_periods_total",
	"container_cpu_cfs_throttled_seconds_total", "container_cpu_system_seconds_total", "container_cpu_usage_seconds_total",
	"container_cpu_user_seconds_total", "container_file_descriptors", "container_fs_inodes_free", "container_fs_inodes_total",
	"container_fs_limit_bytes", "container_fs_reads_bytes_total", "container_fs_reads_total", "container_fs_usage_bytes",
	"container_fs_writes_bytes_total", "container_fs_writes_total", "container_hugetlb_max_usage_bytes", "container_hugetlb_usage_bytes",
	"container_last_seen", "container_memory_cache", "container_memory_failcnt", "container_memory_failures_total",
	"container_memory_kernel_usage", "container_memory_mapped_file", "container_memory_max_usage_bytes", "container_memory_rss",
	"container_memory_swap", "container_memory_usage_bytes", "container_memory_working_set_bytes",
	"container_network_receive_bytes_total", "container_network_receive_errors_total", "container_network_receive_packets_dropped_total",
	"container_network_receive_packets_total", "container_network_transmit_bytes_total", "container_network_transmit_errors_total",
	"container_network_transmit_packets_dropped_total", "container_network_transmit_packets_total", "container_oom_events_total",
	"container_pressure_cpu_stalled_seconds_total", "container_pressure_cpu_waiting_seconds_total",
	"container_pressure_io_stalled_seconds_total", "container_pressure_io_waiting_seconds_total",
	"container_pressure_memory_stalled_seconds_total", "container_pressure_memory_waiting_seconds_total",
	"container_processes", "container_sockets", "container_spec_cpu_period", "container_spec_cpu_quota", "container_spec_cpu_shares",
	"container_spec_memory_limit_bytes", "container_spec_memory_reservation_limit_bytes", "container_spec_memory_swap_limit_bytes",
	"container_start_time_seconds", "container_threads", "container_threads_max", "container_ulimits_soft",
}

func TestMetricDescriptorsAreCadvisors(t *testing.T) {
	have := map[string]bool{}
	for _, d := range metricDescriptors {
		if have[d.Name] {
			t.Errorf("%s described twice", d.Name)
		}
		have[d.Name] = true
		if d.Help == "" || len(d.LabelKeys) < len(baseLabels) {
			t.Errorf("%s: help %q, labels %v", d.Name, d.Help, d.LabelKeys)
		}
	}
	for _, n := range critestMetricNames {
		if !have[n] {
			t.Errorf("no descriptor for %s", n)
		}
	}
}

// Every metric built from a full sample has a descriptor with as many label
// keys as it has values, and every described metric is produced.
func TestMetricsMatchDescriptors(t *testing.T) {
	m := &metricSet{labels: []string{"id", "c", "busybox"}, ts: 1}
	psi := &stats.PSI{Some: stats.PSILine{Total: 5}, Full: stats.PSILine{Total: 3}}
	cgroupMetrics(m, &stats.Cgroup{HasCPU: true, CPUUsageNanos: 10, HasMemory: true, MemoryUsage: 4096, HasPids: true, Pids: 2, CPUPSI: psi, MemoryPSI: psi, IOPSI: psi})
	extraMetrics(m, &stats.Extra{
		HasCPUStat: true, CPUUserNanos: 6, CPUSysNanos: 4, CPUQuota: 20000, CPUPeriod: 100000, CPUShares: 1024,
		HasMemory: true, MemoryLimit: 64 << 20, HasThreads: true, Threads: 3,
		Blkio:   []stats.BlkioStat{{Major: 8, Minor: 0, Op: "Read", Bytes: 4096, Ops: 1}, {Major: 8, Minor: 0, Op: "Write", Bytes: 8192, Ops: 2}},
		HugeTLB: []stats.HugeTLBStat{{PageSize: "2MB"}},
	}, stats.ProcStats{FDs: 3, Sockets: 1, MaxOpenFiles: 1024}, func(_, _ uint64) string { return "/dev/sda" })
	networkMetrics(m, []stats.Interface{{Name: "eth0", RxBytes: 1}})
	for _, n := range []string{"container_last_seen", "container_start_time_seconds"} {
		m.add(n, 1)
	}
	for _, n := range []string{"container_fs_usage_bytes", "container_fs_limit_bytes", "container_fs_inodes_total", "container_fs_inodes_free"} {
		m.add(n, 1, "/dev/sda")
	}
	keys := map[string]int{}
	for _, d := range metricDescriptors {
		keys[d.Name] = len(d.LabelKeys)
	}
	seen := map[string]bool{}
	for _, mt := range m.out {
		n, ok := keys[mt.Name]
		if !ok {
			t.Errorf("%s has no descriptor", mt.Name)
			continue
		}
		if n != len(mt.LabelValues) {
			t.Errorf("%s: %d label values %v, descriptor has %d keys", mt.Name, len(mt.LabelValues), mt.LabelValues, n)
		}
		seen[mt.Name] = true
	}
	for name := range keys {
		if !seen[name] {
			t.Errorf("%s described but never produced", name)
		}
	}
}
