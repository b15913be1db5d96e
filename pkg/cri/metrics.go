package cri

import (
	"context"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/pkg/container"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
	"github.com/pod-shim/pod-shim/pkg/stats"
)

// metricTypes translates pkg/stats' metric kinds.
var metricTypes = map[stats.MetricType]runtimeapi.MetricType{
	stats.Counter: runtimeapi.MetricType_COUNTER,
	stats.Gauge:   runtimeapi.MetricType_GAUGE,
}

// metricDescriptors are pkg/stats' cadvisor metric table in CRI terms.
var metricDescriptors = func() []*runtimeapi.MetricDescriptor {
	out := make([]*runtimeapi.MetricDescriptor, 0, len(stats.MetricDefs))
	for _, d := range stats.MetricDefs {
		out = append(out, &runtimeapi.MetricDescriptor{Name: d.Name, Help: d.Help, LabelKeys: append(append([]string{}, stats.BaseLabels...), d.Extra...)})
	}
	return out
}()

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

// criMetrics translates a metric set taken at ts.
func criMetrics(m *stats.MetricSet, ts int64) []*runtimeapi.Metric {
	out := make([]*runtimeapi.Metric, 0, len(m.Metrics))
	for _, x := range m.Metrics {
		out = append(out, &runtimeapi.Metric{Name: x.Name, Timestamp: ts, MetricType: metricTypes[x.Type], LabelValues: x.Labels, Value: &runtimeapi.UInt64Value{Value: x.Value}})
	}
	return out
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
	pod := stats.NewMetricSet(sb.ID, sandboxMetadata(sb).GetName(), "")
	// The network is the pod's: its containers share the namespace.
	if sb.NetNSPath != "" {
		if ifs, err := stats.NetNS(sb.NetNSPath); err == nil {
			pod.Network(ifs)
		} else {
			s.log.Debug("pod network metrics", "sandbox", sb.ID, "error", err)
		}
	}
	pm.Metrics = criMetrics(pod, now.UnixNano())
	for _, c := range cs {
		if c.State != container.StateRunning {
			continue
		}
		cm := stats.NewMetricSet(c.ID, c.Config.Name, c.Config.Image)
		s.stats.ContainerMetrics(cm, c.ID, c.Bundle, s.upperDir(c.ID), c.StartedAt, now)
		pm.ContainerMetrics = append(pm.ContainerMetrics, &runtimeapi.ContainerMetrics{ContainerId: c.ID, Metrics: criMetrics(cm, now.UnixNano())})
	}
	return pm, nil
}
