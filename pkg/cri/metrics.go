package cri

import (
	"context"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cadvisor's metric names and label keys, so the kubelet's
// /metrics/cadvisor reads the same whether it asks cadvisor or the runtime.
// Values are from the same samples as the stats RPCs.
var metricDescriptors = []*runtimeapi.MetricDescriptor{
	{Name: "container_cpu_usage_seconds_total", Help: "Cumulative cpu time consumed in seconds.", LabelKeys: containerLabels},
	{Name: "container_memory_usage_bytes", Help: "Current memory usage in bytes, including all memory regardless of when it was accessed", LabelKeys: containerLabels},
	{Name: "container_memory_working_set_bytes", Help: "Current working set in bytes.", LabelKeys: containerLabels},
	{Name: "container_memory_rss", Help: "Size of RSS in bytes.", LabelKeys: containerLabels},
	{Name: "container_memory_failures_total", Help: "Cumulative count of memory allocation failures.", LabelKeys: append(append([]string{}, containerLabels...), "failure_type", "scope")},
	{Name: "container_processes", Help: "Number of processes running inside the container.", LabelKeys: containerLabels},
	{Name: "container_fs_usage_bytes", Help: "Number of bytes that are consumed by the container on this filesystem.", LabelKeys: containerLabels},
	{Name: "container_fs_inodes_total", Help: "Number of inodes used by the container on this filesystem.", LabelKeys: containerLabels},
	{Name: "container_network_receive_bytes_total", Help: "Cumulative count of bytes received", LabelKeys: networkLabels},
	{Name: "container_network_transmit_bytes_total", Help: "Cumulative count of bytes transmitted", LabelKeys: networkLabels},
	{Name: "container_network_receive_errors_total", Help: "Cumulative count of errors encountered while receiving", LabelKeys: networkLabels},
	{Name: "container_network_transmit_errors_total", Help: "Cumulative count of errors encountered while transmitting", LabelKeys: networkLabels},
}

var (
	containerLabels = []string{"id", "name", "image"}
	networkLabels   = []string{"id", "name", "image", "interface"}
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

func (s *Server) podSandboxMetrics() ([]*runtimeapi.PodSandboxMetrics, error) {
	pods, err := s.listSandboxStats(nil)
	if err != nil {
		return nil, err
	}
	out := make([]*runtimeapi.PodSandboxMetrics, 0, len(pods))
	for _, p := range pods {
		l := p.GetLinux()
		pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: p.GetAttributes().GetId()}
		podLabels := []string{pm.PodSandboxId, p.GetAttributes().GetMetadata().GetName(), ""}
		pm.Metrics = usageMetrics(podLabels, l.GetCpu(), l.GetMemory(), nil)
		if pr := l.GetProcess(); pr != nil {
			pm.Metrics = append(pm.Metrics, gauge("container_processes", pr.GetTimestamp(), podLabels, pr.GetProcessCount().GetValue()))
		}
		if n := l.GetNetwork(); n != nil {
			for _, i := range n.GetInterfaces() {
				lv := append(append([]string{}, podLabels...), i.GetName())
				ts := n.GetTimestamp()
				pm.Metrics = append(pm.Metrics,
					counter("container_network_receive_bytes_total", ts, lv, i.GetRxBytes().GetValue()),
					counter("container_network_transmit_bytes_total", ts, lv, i.GetTxBytes().GetValue()),
					counter("container_network_receive_errors_total", ts, lv, i.GetRxErrors().GetValue()),
					counter("container_network_transmit_errors_total", ts, lv, i.GetTxErrors().GetValue()))
			}
		}
		for _, c := range l.GetContainers() {
			labels := []string{c.GetAttributes().GetId(), c.GetAttributes().GetMetadata().GetName(), ""}
			pm.ContainerMetrics = append(pm.ContainerMetrics, &runtimeapi.ContainerMetrics{
				ContainerId: c.GetAttributes().GetId(),
				Metrics:     usageMetrics(labels, c.GetCpu(), c.GetMemory(), c.GetWritableLayer()),
			})
		}
		out = append(out, pm)
	}
	return out, nil
}

func usageMetrics(labels []string, cpu *runtimeapi.CpuUsage, mem *runtimeapi.MemoryUsage, fs *runtimeapi.FilesystemUsage) []*runtimeapi.Metric {
	var ms []*runtimeapi.Metric
	if cpu != nil {
		// cadvisor reports seconds as a float; the CRI value is an integer,
		// so this counter carries nanoseconds as containerd's does.
		ms = append(ms, counter("container_cpu_usage_seconds_total", cpu.GetTimestamp(), labels, cpu.GetUsageCoreNanoSeconds().GetValue()))
	}
	if mem != nil {
		ts := mem.GetTimestamp()
		ms = append(ms,
			gauge("container_memory_usage_bytes", ts, labels, mem.GetUsageBytes().GetValue()),
			gauge("container_memory_working_set_bytes", ts, labels, mem.GetWorkingSetBytes().GetValue()),
			gauge("container_memory_rss", ts, labels, mem.GetRssBytes().GetValue()),
			counter("container_memory_failures_total", ts, append(append([]string{}, labels...), "pgfault", "container"), mem.GetPageFaults().GetValue()),
			counter("container_memory_failures_total", ts, append(append([]string{}, labels...), "pgmajfault", "container"), mem.GetMajorPageFaults().GetValue()))
	}
	if fs != nil {
		ts := fs.GetTimestamp()
		ms = append(ms,
			gauge("container_fs_usage_bytes", ts, labels, fs.GetUsedBytes().GetValue()),
			gauge("container_fs_inodes_total", ts, labels, fs.GetInodesUsed().GetValue()))
	}
	return ms
}

func counter(name string, ts int64, labels []string, v uint64) *runtimeapi.Metric {
	return &runtimeapi.Metric{Name: name, Timestamp: ts, MetricType: runtimeapi.MetricType_COUNTER, LabelValues: labels, Value: &runtimeapi.UInt64Value{Value: v}}
}

func gauge(name string, ts int64, labels []string, v uint64) *runtimeapi.Metric {
	return &runtimeapi.Metric{Name: name, Timestamp: ts, MetricType: runtimeapi.MetricType_GAUGE, LabelValues: labels, Value: &runtimeapi.UInt64Value{Value: v}}
}
