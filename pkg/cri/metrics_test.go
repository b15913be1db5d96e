package cri

import (
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

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
		if d.Help == "" || len(d.LabelKeys) < len(stats.BaseLabels) {
			t.Errorf("%s: help %q, labels %v", d.Name, d.Help, d.LabelKeys)
		}
	}
	for _, n := range critestMetricNames {
		if !have[n] {
			t.Errorf("no descriptor for %s", n)
		}
	}
}

// criMetrics keeps each metric's name, type, labels and value.
func TestCRIMetricsTranslate(t *testing.T) {
	m := stats.NewMetricSet("id", "c", "busybox")
	m.Add("container_processes", 3)
	m.Add("container_cpu_usage_seconds_total", 10, "total")
	got := criMetrics(m, 42)
	if len(got) != 2 {
		t.Fatalf("%d metrics, want 2", len(got))
	}
	if g := got[0]; g.Name != "container_processes" || g.MetricType != runtimeapi.MetricType_GAUGE || g.Timestamp != 42 ||
		g.GetValue().GetValue() != 3 || strings.Join(g.LabelValues, ",") != "id,c,busybox" {
		t.Errorf("gauge %v", g)
	}
	if g := got[1]; g.MetricType != runtimeapi.MetricType_COUNTER || strings.Join(g.LabelValues, ",") != "id,c,busybox,total" {
		t.Errorf("counter %v", g)
	}
}
