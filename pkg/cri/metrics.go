package cri

import (
	"context"
	"path/filepath"
	"strconv"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/pkg/container"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
	"github.com/pod-shim/pod-shim/pkg/stats"
)

// metricDef is one cadvisor metric: its name, help, type and the labels it
// has beyond the base ones.
type metricDef struct {
	name, help string
	typ        runtimeapi.MetricType
	extra      []string
}

const (
	counterT = runtimeapi.MetricType_COUNTER
	gaugeT   = runtimeapi.MetricType_GAUGE
)

// baseLabels are every metric's first labels: the container's (or, for pod
// level metrics, the pod's) id, name and image, as CRI-O's stats server has.
var baseLabels = []string{"id", "name", "image"}

// metricDefs are cadvisor's metric names, help and label keys, so the
// kubelet's /metrics/cadvisor reads the same whether it asks cadvisor or the
// runtime: the set critest v1.37 expects of a kubelet on the cadvisor stats
// provider. Values are integers (the CRI's Metric has a uint64), so the
// *_seconds_total counters carry nanoseconds, as containerd's do, and
// container_start_time_seconds and container_last_seen are whole seconds.
var metricDefs = []metricDef{
	{"container_blkio_device_usage_total", "Blkio Device bytes usage", counterT, []string{"device", "major", "minor", "operation"}},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", counterT, nil},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", counterT, nil},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", counterT, nil},
	{"container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", counterT, nil},
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", counterT, []string{"cpu"}},
	{"container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", counterT, nil},
	{"container_file_descriptors", "Number of open file descriptors for the container.", gaugeT, nil},
	{"container_fs_inodes_free", "Number of available Inodes", gaugeT, []string{"device"}},
	{"container_fs_inodes_total", "Number of Inodes", gaugeT, []string{"device"}},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", gaugeT, []string{"device"}},
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read", counterT, []string{"device"}},
	{"container_fs_reads_total", "Cumulative count of reads completed", counterT, []string{"device"}},
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", gaugeT, []string{"device"}},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written", counterT, []string{"device"}},
	{"container_fs_writes_total", "Cumulative count of writes completed", counterT, []string{"device"}},
	{"container_hugetlb_max_usage_bytes", "Hugepage max usage", gaugeT, []string{"pagesize"}},
	{"container_hugetlb_usage_bytes", "Hugepage usage", gaugeT, []string{"pagesize"}},
	{"container_last_seen", "Last time a container was seen by the exporter", gaugeT, nil},
	{"container_memory_cache", "Number of bytes of page cache memory.", gaugeT, nil},
	{"container_memory_failcnt", "Number of memory usage hits limits", counterT, nil},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures.", counterT, []string{"failure_type", "scope"}},
	{"container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", gaugeT, nil},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", gaugeT, nil},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes", gaugeT, nil},
	{"container_memory_rss", "Size of RSS in bytes.", gaugeT, nil},
	{"container_memory_swap", "Container swap usage in bytes.", gaugeT, nil},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", gaugeT, nil},
	{"container_memory_working_set_bytes", "Current working set in bytes.", gaugeT, nil},
	{"container_network_receive_bytes_total", "Cumulative count of bytes received", counterT, []string{"interface"}},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", counterT, []string{"interface"}},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving", counterT, []string{"interface"}},
	{"container_network_receive_packets_total", "Cumulative count of packets received", counterT, []string{"interface"}},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", counterT, []string{"interface"}},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting", counterT, []string{"interface"}},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting", counterT, []string{"interface"}},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted", counterT, []string{"interface"}},
	{"container_oom_events_total", "Count of out of memory events observed for the container", counterT, nil},
	{"container_pressure_cpu_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to CPU congestion.", counterT, nil},
	{"container_pressure_cpu_waiting_seconds_total", "Total time duration tasks in the container have waited due to CPU congestion.", counterT, nil},
	{"container_pressure_io_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to IO congestion.", counterT, nil},
	{"container_pressure_io_waiting_seconds_total", "Total time duration tasks in the container have waited due to IO congestion.", counterT, nil},
	{"container_pressure_memory_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to memory congestion.", counterT, nil},
	{"container_pressure_memory_waiting_seconds_total", "Total time duration tasks in the container have waited due to memory congestion.", counterT, nil},
	{"container_processes", "Number of processes running inside the container.", gaugeT, nil},
	{"container_sockets", "Number of open sockets for the container.", gaugeT, nil},
	{"container_spec_cpu_period", "CPU period of the container.", gaugeT, nil},
	{"container_spec_cpu_quota", "CPU quota of the container.", gaugeT, nil},
	{"container_spec_cpu_shares", "CPU share of the container.", gaugeT, nil},
	{"container_spec_memory_limit_bytes", "Memory limit for the container.", gaugeT, nil},
	{"container_spec_memory_reservation_limit_bytes", "Memory reservation limit for the container.", gaugeT, nil},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", gaugeT, nil},
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", gaugeT, nil},
	{"container_threads", "Number of threads running inside the container", gaugeT, nil},
	{"container_threads_max", "Maximum number of threads allowed inside the container, infinity if value is zero", gaugeT, nil},
	{"container_ulimits_soft", "Soft ulimit values for the container root process. Unlimited if -1, except priority and nice", gaugeT, []string{"ulimit"}},
}

var (
	metricDescriptors = func() []*runtimeapi.MetricDescriptor {
		out := make([]*runtimeapi.MetricDescriptor, 0, len(metricDefs))
		for _, d := range metricDefs {
			out = append(out, &runtimeapi.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: append(append([]string{}, baseLabels...), d.extra...)})
		}
		return out
	}()
	metricTypes = func() map[string]runtimeapi.MetricType {
		out := map[string]runtimeapi.MetricType{}
		for _, d := range metricDefs {
			out[d.name] = d.typ
		}
		return out
	}()
)

// ListMetricDescriptors lists the metrics ListPodSandboxMetrics returns.
func (s *Server) ListMetricDescriptors(ctx context.Context, r *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: metricDescriptors}, nil
}

// ListPodSandboxMetrics returns cadvisor-style metrics of every ready pod.
func (s *Server) ListPodSandboxMetrics(ctx context.Context, r *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	items, err := s.podSandboxMetrics()
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: items}, nil
}

// StreamPodSandboxMetrics is ListPodSandboxMetrics for clients that want a stream.
func (s *Server) StreamPodSandboxMetrics(r *runtimeapi.StreamPodSandboxMetricsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxMetricsResponse]) error {
	items, err := s.podSandboxMetrics()
	if err != nil {
		return err
	}
	return stream.Send(&runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: items})
}

// metricSet collects one pod's or container's metrics under its base labels.
type metricSet struct {
	labels []string
	ts     int64
	out    []*runtimeapi.Metric
}

func (m *metricSet) add(name string, v uint64, extra ...string) {
	lv := append(append(make([]string, 0, len(m.labels)+len(extra)), m.labels...), extra...)
	m.out = append(m.out, &runtimeapi.Metric{Name: name, Timestamp: m.ts, MetricType: metricTypes[name], LabelValues: lv, Value: &runtimeapi.UInt64Value{Value: v}})
}

func (s *Server) podSandboxMetrics() ([]*runtimeapi.PodSandboxMetrics, error) {
	return perReadySandbox(s, sandbox.Filter{}, "pod metrics", s.sandboxMetrics)
}

func (s *Server) sandboxMetrics(sb *sandbox.Sandbox) (*runtimeapi.PodSandboxMetrics, error) {
	cs, err := s.containers.List(container.Filter{SandboxID: sb.ID})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: sb.ID}
	pod := &metricSet{labels: []string{sb.ID, sandboxMetadata(sb).GetName(), ""}, ts: now.UnixNano()}
	// The network is the pod's: its containers share the namespace.
	if sb.NetNSPath != "" {
		if ifs, err := stats.NetNS(sb.NetNSPath); err == nil {
			networkMetrics(pod, ifs)
		} else {
			s.log.Debug("pod network metrics", "sandbox", sb.ID, "error", err)
		}
	}
	pm.Metrics = pod.out
	for _, c := range cs {
		if c.State != container.StateRunning {
			continue
		}
		cm := &metricSet{labels: []string{c.ID, c.Config.Name, c.Config.Image}, ts: now.UnixNano()}
		s.containerMetrics(cm, c, now)
		pm.ContainerMetrics = append(pm.ContainerMetrics, &runtimeapi.ContainerMetrics{ContainerId: c.ID, Metrics: cm.out})
	}
	return pm, nil
}

func networkMetrics(m *metricSet, ifs []stats.Interface) {
	for _, i := range ifs {
		m.add("container_network_receive_bytes_total", i.RxBytes, i.Name)
		m.add("container_network_receive_packets_total", i.RxPackets, i.Name)
		m.add("container_network_receive_packets_dropped_total", i.RxDropped, i.Name)
		m.add("container_network_receive_errors_total", i.RxErrors, i.Name)
		m.add("container_network_transmit_bytes_total", i.TxBytes, i.Name)
		m.add("container_network_transmit_packets_total", i.TxPackets, i.Name)
		m.add("container_network_transmit_packets_dropped_total", i.TxDropped, i.Name)
		m.add("container_network_transmit_errors_total", i.TxErrors, i.Name)
	}
}

// containerMetrics reads one running container's cgroup, processes and
// writable layer into m.
func (s *Server) containerMetrics(m *metricSet, c *container.Container, now time.Time) {
	m.add("container_last_seen", uint64(now.Unix()))
	if !c.StartedAt.IsZero() {
		m.add("container_start_time_seconds", uint64(c.StartedAt.Unix()))
	}
	upper := filepath.Join(s.stats.layerRoot, c.ID, "upper")
	if fs, err := stats.Filesystem(upper, "/proc/self/mountinfo"); err == nil {
		u := s.stats.collector.Layer(c.ID, upper)
		m.add("container_fs_usage_bytes", u.Bytes, fs.Device)
		m.add("container_fs_limit_bytes", fs.Capacity, fs.Device)
		m.add("container_fs_inodes_total", fs.Inodes, fs.Device)
		m.add("container_fs_inodes_free", fs.InodesFree, fs.Device)
	}
	path, err := s.stats.cgroupOf(c)
	if err != nil || path == "" {
		return
	}
	if smp, err := s.stats.collector.Read(c.ID, path); err == nil {
		cgroupMetrics(m, smp.Cgroup)
	}
	e := s.stats.collector.H.ReadExtra(path)
	extraMetrics(m, e, stats.Procs("/proc", e.Procs), stats.BlockDevice)
}

// cgroupMetrics are the metrics of the stats RPCs' sample.
func cgroupMetrics(m *metricSet, cg *stats.Cgroup) {
	if cg.HasCPU {
		m.add("container_cpu_usage_seconds_total", cg.CPUUsageNanos, "total")
	}
	if cg.HasMemory {
		m.add("container_memory_usage_bytes", cg.MemoryUsage)
		m.add("container_memory_working_set_bytes", cg.MemoryWorking)
		m.add("container_memory_rss", cg.MemoryRSS)
		m.add("container_memory_swap", cg.SwapUsage)
		// cadvisor's pgfault counts are the container's own and its
		// hierarchy's; the cgroup files give one number for both here.
		for _, scope := range []string{"container", "hierarchy"} {
			m.add("container_memory_failures_total", cg.PageFaults, "pgfault", scope)
			m.add("container_memory_failures_total", cg.MajorPageFaults, "pgmajfault", scope)
		}
	}
	if cg.HasPids {
		m.add("container_processes", cg.Pids)
	}
	for _, p := range []struct {
		psi            *stats.PSI
		stalled, waits string
	}{
		{cg.CPUPSI, "container_pressure_cpu_stalled_seconds_total", "container_pressure_cpu_waiting_seconds_total"},
		{cg.MemoryPSI, "container_pressure_memory_stalled_seconds_total", "container_pressure_memory_waiting_seconds_total"},
		{cg.IOPSI, "container_pressure_io_stalled_seconds_total", "container_pressure_io_waiting_seconds_total"},
	} {
		if p.psi != nil {
			m.add(p.stalled, p.psi.Full.Total)
			m.add(p.waits, p.psi.Some.Total)
		}
	}
}

// extraMetrics are the cadvisor metrics beyond the stats RPCs: CPU split
// and throttling, limits, memory detail, block I/O, hugetlb, threads and the
// processes' descriptors. device names a block device for the I/O labels.
func extraMetrics(m *metricSet, e *stats.Extra, ps stats.ProcStats, device func(major, minor uint64) string) {
	if e.HasCPUStat {
		m.add("container_cpu_user_seconds_total", e.CPUUserNanos)
		m.add("container_cpu_system_seconds_total", e.CPUSysNanos)
	}
	m.add("container_cpu_cfs_periods_total", e.CFSPeriods)
	m.add("container_cpu_cfs_throttled_periods_total", e.CFSThrottled)
	m.add("container_cpu_cfs_throttled_seconds_total", e.CFSThrottledNanos)
	m.add("container_spec_cpu_period", e.CPUPeriod)
	m.add("container_spec_cpu_shares", e.CPUShares)
	if e.CPUQuota > 0 { // cadvisor reports a quota only when there is one
		m.add("container_spec_cpu_quota", uint64(e.CPUQuota))
	}
	m.add("container_spec_memory_limit_bytes", e.MemoryLimit)
	m.add("container_spec_memory_reservation_limit_bytes", e.MemorySoftLimit)
	m.add("container_spec_memory_swap_limit_bytes", e.MemorySwapLimit)
	if e.HasMemory {
		m.add("container_memory_cache", e.MemoryCache)
		m.add("container_memory_mapped_file", e.MemoryMapped)
		m.add("container_memory_kernel_usage", e.MemoryKernel)
		m.add("container_memory_max_usage_bytes", e.MemoryMaxUsage)
		m.add("container_memory_failcnt", e.MemFailcnt)
	}
	m.add("container_oom_events_total", e.OOMEvents)
	if e.HasThreads {
		m.add("container_threads", e.Threads)
		m.add("container_threads_max", e.ThreadsMax)
	}
	m.add("container_file_descriptors", ps.FDs)
	m.add("container_sockets", ps.Sockets)
	if ps.MaxOpenFiles > 0 {
		m.add("container_ulimits_soft", ps.MaxOpenFiles, "max_open_files")
	}
	for _, b := range e.Blkio {
		dev, maj, min := device(b.Major, b.Minor), strconv.FormatUint(b.Major, 10), strconv.FormatUint(b.Minor, 10)
		m.add("container_blkio_device_usage_total", b.Bytes, dev, maj, min, b.Op)
		if b.Op == "Read" {
			m.add("container_fs_reads_bytes_total", b.Bytes, dev)
			m.add("container_fs_reads_total", b.Ops, dev)
		} else {
			m.add("container_fs_writes_bytes_total", b.Bytes, dev)
			m.add("container_fs_writes_total", b.Ops, dev)
		}
	}
	for _, h := range e.HugeTLB {
		m.add("container_hugetlb_usage_bytes", h.Usage, h.PageSize)
		m.add("container_hugetlb_max_usage_bytes", h.MaxUsage, h.PageSize)
	}
}
