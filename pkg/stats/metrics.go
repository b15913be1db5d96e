package stats

import (
	"strconv"
	"time"
)

// MetricType is whether a metric only grows (a counter) or goes both ways.
type MetricType int

const (
	Counter MetricType = iota
	Gauge
)

// MetricDef is one cadvisor metric: its name, help, type and the label keys
// it has beyond BaseLabels.
type MetricDef struct {
	Name, Help string
	Type       MetricType
	Extra      []string
}

// BaseLabels are every metric's first labels: the container's (or, for pod
// level metrics, the pod's) id, name and image, as CRI-O's stats server has.
var BaseLabels = []string{"id", "name", "image"}

// MetricDefs are cadvisor's metric names, help and label keys, so the
// kubelet's /metrics/cadvisor reads the same whether it asks cadvisor or the
// runtime: the set critest v1.37 expects of a kubelet on the cadvisor stats
// provider. Values are integers (the CRI's Metric has a uint64), so the
// *_seconds_total counters carry nanoseconds, as containerd's do, and
// container_start_time_seconds and container_last_seen are whole seconds.
var MetricDefs = []MetricDef{
	{"container_blkio_device_usage_total", "Blkio Device bytes usage", Counter, []string{"device", "major", "minor", "operation"}},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", Counter, nil},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", Counter, nil},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", Counter, nil},
	{"container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", Counter, nil},
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", Counter, []string{"cpu"}},
	{"container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", Counter, nil},
	{"container_file_descriptors", "Number of open file descriptors for the container.", Gauge, nil},
	{"container_fs_inodes_free", "Number of available Inodes", Gauge, []string{"device"}},
	{"container_fs_inodes_total", "Number of Inodes", Gauge, []string{"device"}},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", Gauge, []string{"device"}},
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read", Counter, []string{"device"}},
	{"container_fs_reads_total", "Cumulative count of reads completed", Counter, []string{"device"}},
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", Gauge, []string{"device"}},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written", Counter, []string{"device"}},
	{"container_fs_writes_total", "Cumulative count of writes completed", Counter, []string{"device"}},
	{"container_hugetlb_max_usage_bytes", "Hugepage max usage", Gauge, []string{"pagesize"}},
	{"container_hugetlb_usage_bytes", "Hugepage usage", Gauge, []string{"pagesize"}},
	{"container_last_seen", "Last time a container was seen by the exporter", Gauge, nil},
	{"container_memory_cache", "Number of bytes of page cache memory.", Gauge, nil},
	{"container_memory_failcnt", "Number of memory usage hits limits", Counter, nil},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures.", Counter, []string{"failure_type", "scope"}},
	{"container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", Gauge, nil},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", Gauge, nil},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes", Gauge, nil},
	{"container_memory_rss", "Size of RSS in bytes.", Gauge, nil},
	{"container_memory_swap", "Container swap usage in bytes.", Gauge, nil},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", Gauge, nil},
	{"container_memory_working_set_bytes", "Current working set in bytes.", Gauge, nil},
	{"container_network_receive_bytes_total", "Cumulative count of bytes received", Counter, []string{"interface"}},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", Counter, []string{"interface"}},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving", Counter, []string{"interface"}},
	{"container_network_receive_packets_total", "Cumulative count of packets received", Counter, []string{"interface"}},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", Counter, []string{"interface"}},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting", Counter, []string{"interface"}},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting", Counter, []string{"interface"}},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted", Counter, []string{"interface"}},
	{"container_oom_events_total", "Count of out of memory events observed for the container", Counter, nil},
	{"container_pressure_cpu_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to CPU congestion.", Counter, nil},
	{"container_pressure_cpu_waiting_seconds_total", "Total time duration tasks in the container have waited due to CPU congestion.", Counter, nil},
	{"container_pressure_io_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to IO congestion.", Counter, nil},
	{"container_pressure_io_waiting_seconds_total", "Total time duration tasks in the container have waited due to IO congestion.", Counter, nil},
	{"container_pressure_memory_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to memory congestion.", Counter, nil},
	{"container_pressure_memory_waiting_seconds_total", "Total time duration tasks in the container have waited due to memory congestion.", Counter, nil},
	{"container_processes", "Number of processes running inside the container.", Gauge, nil},
	{"container_sockets", "Number of open sockets for the container.", Gauge, nil},
	{"container_spec_cpu_period", "CPU period of the container.", Gauge, nil},
	{"container_spec_cpu_quota", "CPU quota of the container.", Gauge, nil},
	{"container_spec_cpu_shares", "CPU share of the container.", Gauge, nil},
	{"container_spec_memory_limit_bytes", "Memory limit for the container.", Gauge, nil},
	{"container_spec_memory_reservation_limit_bytes", "Memory reservation limit for the container.", Gauge, nil},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", Gauge, nil},
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", Gauge, nil},
	{"container_threads", "Number of threads running inside the container", Gauge, nil},
	{"container_threads_max", "Maximum number of threads allowed inside the container, infinity if value is zero", Gauge, nil},
	{"container_ulimits_soft", "Soft ulimit values for the container root process. Unlimited if -1, except priority and nice", Gauge, []string{"ulimit"}},
}

var metricTypes = func() map[string]MetricType {
	out := make(map[string]MetricType, len(MetricDefs))
	for _, d := range MetricDefs {
		out[d.Name] = d.Type
	}
	return out
}()

// Metric is one value of a metric with its label values (BaseLabels' first).
type Metric struct {
	Name   string
	Type   MetricType
	Labels []string
	Value  uint64
}

// MetricSet collects one pod's or container's metrics under its base labels.
type MetricSet struct {
	labels  []string
	Metrics []Metric
}

// NewMetricSet starts the metrics of the object with these base labels.
func NewMetricSet(id, name, image string) *MetricSet {
	return &MetricSet{labels: []string{id, name, image}}
}

// Add records metric name (one of MetricDefs) with its extra label values.
func (m *MetricSet) Add(name string, v uint64, extra ...string) {
	lv := append(append(make([]string, 0, len(m.labels)+len(extra)), m.labels...), extra...)
	m.Metrics = append(m.Metrics, Metric{Name: name, Type: metricTypes[name], Labels: lv, Value: v})
}

// Network adds the network metrics of a pod's interfaces.
func (m *MetricSet) Network(ifs []Interface) {
	for _, i := range ifs {
		m.Add("container_network_receive_bytes_total", i.RxBytes, i.Name)
		m.Add("container_network_receive_packets_total", i.RxPackets, i.Name)
		m.Add("container_network_receive_packets_dropped_total", i.RxDropped, i.Name)
		m.Add("container_network_receive_errors_total", i.RxErrors, i.Name)
		m.Add("container_network_transmit_bytes_total", i.TxBytes, i.Name)
		m.Add("container_network_transmit_packets_total", i.TxPackets, i.Name)
		m.Add("container_network_transmit_packets_dropped_total", i.TxDropped, i.Name)
		m.Add("container_network_transmit_errors_total", i.TxErrors, i.Name)
	}
}

// Lifetime adds when the container started and when it was seen.
func (m *MetricSet) Lifetime(startedAt, now time.Time) {
	m.Add("container_last_seen", uint64(now.Unix()))
	if !startedAt.IsZero() {
		m.Add("container_start_time_seconds", uint64(startedAt.Unix()))
	}
}

// Filesystem adds the writable layer's usage on the filesystem fs.
func (m *MetricSet) Filesystem(fs FsInfo, u FsUsage) {
	m.Add("container_fs_usage_bytes", u.Bytes, fs.Device)
	m.Add("container_fs_limit_bytes", fs.Capacity, fs.Device)
	m.Add("container_fs_inodes_total", fs.Inodes, fs.Device)
	m.Add("container_fs_inodes_free", fs.InodesFree, fs.Device)
}

// Cgroup adds the metrics of the stats RPCs' sample.
func (m *MetricSet) Cgroup(cg *Cgroup) {
	if cg.HasCPU {
		m.Add("container_cpu_usage_seconds_total", cg.CPUUsageNanos, "total")
	}
	if cg.HasMemory {
		m.Add("container_memory_usage_bytes", cg.MemoryUsage)
		m.Add("container_memory_working_set_bytes", cg.MemoryWorking)
		m.Add("container_memory_rss", cg.MemoryRSS)
		m.Add("container_memory_swap", cg.SwapUsage)
		// cadvisor's pgfault counts are the container's own and its
		// hierarchy's; the cgroup files give one number for both here.
		for _, scope := range []string{"container", "hierarchy"} {
			m.Add("container_memory_failures_total", cg.PageFaults, "pgfault", scope)
			m.Add("container_memory_failures_total", cg.MajorPageFaults, "pgmajfault", scope)
		}
	}
	if cg.HasPids {
		m.Add("container_processes", cg.Pids)
	}
	for _, p := range []struct {
		psi            *PSI
		stalled, waits string
	}{
		{cg.CPUPSI, "container_pressure_cpu_stalled_seconds_total", "container_pressure_cpu_waiting_seconds_total"},
		{cg.MemoryPSI, "container_pressure_memory_stalled_seconds_total", "container_pressure_memory_waiting_seconds_total"},
		{cg.IOPSI, "container_pressure_io_stalled_seconds_total", "container_pressure_io_waiting_seconds_total"},
	} {
		if p.psi != nil {
			m.Add(p.stalled, p.psi.Full.Total)
			m.Add(p.waits, p.psi.Some.Total)
		}
	}
}

// Extra adds the cadvisor metrics beyond the stats RPCs: CPU split
// and throttling, limits, memory detail, block I/O, hugetlb, threads and the
// processes' descriptors. device names a block device for the I/O labels.
func (m *MetricSet) Extra(e *Extra, ps ProcStats, device func(major, minor uint64) string) {
	if e.HasCPUStat {
		m.Add("container_cpu_user_seconds_total", e.CPUUserNanos)
		m.Add("container_cpu_system_seconds_total", e.CPUSysNanos)
	}
	m.Add("container_cpu_cfs_periods_total", e.CFSPeriods)
	m.Add("container_cpu_cfs_throttled_periods_total", e.CFSThrottled)
	m.Add("container_cpu_cfs_throttled_seconds_total", e.CFSThrottledNanos)
	m.Add("container_spec_cpu_period", e.CPUPeriod)
	m.Add("container_spec_cpu_shares", e.CPUShares)
	if e.CPUQuota > 0 { // cadvisor reports a quota only when there is one
		m.Add("container_spec_cpu_quota", uint64(e.CPUQuota))
	}
	m.Add("container_spec_memory_limit_bytes", e.MemoryLimit)
	m.Add("container_spec_memory_reservation_limit_bytes", e.MemorySoftLimit)
	m.Add("container_spec_memory_swap_limit_bytes", e.MemorySwapLimit)
	if e.HasMemory {
		m.Add("container_memory_cache", e.MemoryCache)
		m.Add("container_memory_mapped_file", e.MemoryMapped)
		m.Add("container_memory_kernel_usage", e.MemoryKernel)
		m.Add("container_memory_max_usage_bytes", e.MemoryMaxUsage)
		m.Add("container_memory_failcnt", e.MemFailcnt)
	}
	m.Add("container_oom_events_total", e.OOMEvents)
	if e.HasThreads {
		m.Add("container_threads", e.Threads)
		m.Add("container_threads_max", e.ThreadsMax)
	}
	m.Add("container_file_descriptors", ps.FDs)
	m.Add("container_sockets", ps.Sockets)
	if ps.MaxOpenFiles > 0 {
		m.Add("container_ulimits_soft", ps.MaxOpenFiles, "max_open_files")
	}
	for _, b := range e.Blkio {
		dev, maj, min := device(b.Major, b.Minor), strconv.FormatUint(b.Major, 10), strconv.FormatUint(b.Minor, 10)
		m.Add("container_blkio_device_usage_total", b.Bytes, dev, maj, min, b.Op)
		if b.Op == "Read" {
			m.Add("container_fs_reads_bytes_total", b.Bytes, dev)
			m.Add("container_fs_reads_total", b.Ops, dev)
		} else {
			m.Add("container_fs_writes_bytes_total", b.Bytes, dev)
			m.Add("container_fs_writes_total", b.Ops, dev)
		}
	}
	for _, h := range e.HugeTLB {
		m.Add("container_hugetlb_usage_bytes", h.Usage, h.PageSize)
		m.Add("container_hugetlb_max_usage_bytes", h.MaxUsage, h.PageSize)
	}
}
