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

// PodSandboxStats reports one pod's usage, its network and its containers.
func (s *Server) PodSandboxStats(ctx context.Context, r *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	if r.GetPodSandboxId() == "" {
		return nil, invalid("pod_sandbox_id is empty")
	}
	if s.stats == nil {
		return nil, unavailable("stats")
	}
	sb, err := s.sandboxes.Get(r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	st, err := s.sandboxStats(sb)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: st}, nil
}

// ListPodSandboxStats reports usage of the ready pods the filter selects.
func (s *Server) ListPodSandboxStats(ctx context.Context, r *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	items, err := s.listSandboxStats(r.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: items}, nil
}

// StreamPodSandboxStats is ListPodSandboxStats for clients that want a stream.
func (s *Server) StreamPodSandboxStats(r *runtimeapi.StreamPodSandboxStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxStatsResponse]) error {
	items, err := s.listSandboxStats(r.GetFilter())
	if err != nil {
		return err
	}
	return stream.Send(&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: items})
}

func (s *Server) listSandboxStats(f *runtimeapi.PodSandboxStatsFilter) ([]*runtimeapi.PodSandboxStats, error) {
	return perReadySandbox(s, sandbox.Filter{ID: f.GetId(), Labels: f.GetLabelSelector()}, "pod stats", s.sandboxStats)
}

// perReadySandbox is what pod stats and pod metrics share: fn's answer for
// every ready sandbox that matches f. A pod fn fails on (one going away
// meanwhile) is logged as what and left out rather than failing the list.
func perReadySandbox[T any](s *Server, f sandbox.Filter, what string, fn func(*sandbox.Sandbox) (T, error)) ([]T, error) {
	if s.stats == nil {
		return nil, unavailable("stats")
	}
	ready := sandbox.StateReady
	f.State = &ready
	sbs, err := s.sandboxes.List(f)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(sbs))
	for _, sb := range sbs {
		v, err := fn(sb)
		if err != nil {
			s.log.Debug(what, "sandbox", sb.ID, "error", err)
			continue
		}
		out = append(out, v)
	}
	return out, nil
}

func (s *Server) sandboxStats(sb *sandbox.Sandbox) (*runtimeapi.PodSandboxStats, error) {
	cs, err := s.containers.List(container.Filter{SandboxID: sb.ID})
	if err != nil {
		return nil, err
	}
	linux := &runtimeapi.LinuxPodSandboxStats{}
	paths := []string{sb.CgroupPath}
	for _, c := range cs {
		if c.State != container.StateRunning {
			continue
		}
		linux.Containers = append(linux.Containers, s.containerStats(c))
		if p, err := s.stats.CgroupOf(c.ID, c.Bundle); err == nil && p != "" {
			paths = append(paths, p)
		}
	}
	if smp, err := s.stats.Pod(sb.ID, sb.Config.CgroupParent, paths); err == nil {
		linux.Cpu, linux.Memory, _, linux.Io = usageOf(smp)
		if smp.HasPids {
			linux.Process = &runtimeapi.ProcessUsage{Timestamp: smp.Time.UnixNano(), ProcessCount: &runtimeapi.UInt64Value{Value: smp.Pids}}
		}
	}
	if sb.NetNSPath != "" {
		if ifs, err := stats.NetNS(sb.NetNSPath); err == nil {
			linux.Network = networkUsage(ifs)
		} else {
			s.log.Debug("pod network stats", "sandbox", sb.ID, "error", err)
		}
	}
	return &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{
			Id:          sb.ID,
			Metadata:    sandboxMetadata(sb),
			Labels:      sb.Config.Labels,
			Annotations: sb.Config.Annotations,
		},
		Linux: linux,
	}, nil
}

// defaultInterface is the interface CNI plugins create in the pod, the one
// the kubelet reports as the pod's network.
const defaultInterface = "eth0"

func networkUsage(ifs []stats.Interface) *runtimeapi.NetworkUsage {
	// A netns without interfaces (after CNI DEL, while a pod is torn down)
	// gets no network stats at all, as from containerd: kubelet v1.37 with
	// PodAndContainerStatsFromCRI dereferences DefaultInterface whenever
	// Network is set, and a nil one panics it.
	if len(ifs) == 0 {
		return nil
	}
	n := &runtimeapi.NetworkUsage{Timestamp: time.Now().UnixNano()}
	for _, i := range ifs {
		u := &runtimeapi.NetworkInterfaceUsage{
			Name:     i.Name,
			RxBytes:  &runtimeapi.UInt64Value{Value: i.RxBytes},
			RxErrors: &runtimeapi.UInt64Value{Value: i.RxErrors},
			TxBytes:  &runtimeapi.UInt64Value{Value: i.TxBytes},
			TxErrors: &runtimeapi.UInt64Value{Value: i.TxErrors},
		}
		n.Interfaces = append(n.Interfaces, u)
		if i.Name == defaultInterface {
			n.DefaultInterface = u
		}
	}
	if n.DefaultInterface == nil && len(n.Interfaces) > 0 {
		n.DefaultInterface = n.Interfaces[0]
	}
	return n
}
