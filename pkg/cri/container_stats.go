package cri

import (
	"context"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/pkg/container"
	"github.com/pod-shim/pod-shim/pkg/stats"
)

// statsSource is pkg/stats' Source; collector and layerRoot are what the
// image filesystem RPC reads, layerRoot only without an image store.
type statsSource struct {
	*stats.Source
	collector *stats.Collector
	layerRoot string
}

func newStatsSource(c *stats.Collector, layerRoot string) *statsSource {
	return &statsSource{Source: stats.NewSource(c), collector: c, layerRoot: layerRoot}
}

// upperDir is where container id's writable layer is: the image store's
// answer, or <layerRoot>/<id>/upper for a server without one.
func (s *Server) upperDir(id string) string {
	if s.images != nil {
		if p, err := s.images.WritableLayer(id); err == nil {
			return p
		}
		return ""
	}
	return filepath.Join(s.stats.layerRoot, id, "upper")
}

// ContainerStats reports one container's usage.
func (s *Server) ContainerStats(ctx context.Context, r *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	if r.GetContainerId() == "" {
		return nil, invalid("container_id is empty")
	}
	if s.stats == nil {
		return nil, unavailable("stats")
	}
	c, err := s.containers.Get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: s.containerStats(c)}, nil
}

// ListContainerStats reports usage of the containers the filter selects.
func (s *Server) ListContainerStats(ctx context.Context, r *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	items, err := s.listContainerStats(r.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListContainerStatsResponse{Stats: items}, nil
}

// StreamContainerStats is ListContainerStats for clients that want a stream.
func (s *Server) StreamContainerStats(r *runtimeapi.StreamContainerStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainerStatsResponse]) error {
	items, err := s.listContainerStats(r.GetFilter())
	if err != nil {
		return err
	}
	return stream.Send(&runtimeapi.StreamContainerStatsResponse{ContainerStats: items})
}

func (s *Server) listContainerStats(f *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	if s.stats == nil {
		return nil, unavailable("stats")
	}
	cs, err := s.containers.List(container.Filter{ID: f.GetId(), SandboxID: f.GetPodSandboxId(), Labels: f.GetLabelSelector()})
	if err != nil {
		return nil, err
	}
	out := make([]*runtimeapi.ContainerStats, 0, len(cs))
	for _, c := range cs {
		// The kubelet asks for all and keeps running ones; exited ones
		// have no cgroup left to read.
		if c.State != container.StateRunning && f.GetId() == "" {
			continue
		}
		out = append(out, s.containerStats(c))
	}
	if f.GetId() == "" && f.GetPodSandboxId() == "" && len(f.GetLabelSelector()) == 0 {
		live := make(map[string]bool, len(cs))
		for _, c := range cs {
			live[c.ID] = true
		}
		s.stats.Retain(live)
	}
	return out, nil
}

func (s *Server) containerStats(c *container.Container) *runtimeapi.ContainerStats {
	out := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{
			Id:          c.ID,
			Metadata:    &runtimeapi.ContainerMetadata{Name: c.Config.Name, Attempt: c.Config.Attempt},
			Labels:      c.Config.Labels,
			Annotations: c.Config.Annotations,
		},
	}
	now := time.Now().UnixNano()
	upper := s.upperDir(c.ID)
	u := s.stats.Layer(c.ID, upper)
	out.WritableLayer = &runtimeapi.FilesystemUsage{
		Timestamp:  now,
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: upper},
		UsedBytes:  &runtimeapi.UInt64Value{Value: u.Bytes},
		InodesUsed: &runtimeapi.UInt64Value{Value: u.Inodes},
	}
	if c.State != container.StateRunning {
		return out
	}
	smp, err := s.stats.Container(c.ID, c.Bundle)
	if err != nil || smp == nil {
		if err != nil {
			s.log.Debug("container cgroup unreadable", "container", c.ID, "error", err)
		}
		return out
	}
	out.Cpu, out.Memory, out.Swap, out.Io = usageOf(smp)
	return out
}

// usageOf converts one sample into the CRI messages shared by container
// and pod stats.
func usageOf(smp *stats.Sample) (*runtimeapi.CpuUsage, *runtimeapi.MemoryUsage, *runtimeapi.SwapUsage, *runtimeapi.IoUsage) {
	ts := smp.Time.UnixNano()
	var cpu *runtimeapi.CpuUsage
	if smp.HasCPU {
		cpu = &runtimeapi.CpuUsage{
			Timestamp:            ts,
			UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: smp.CPUUsageNanos},
			Psi:                  psiOf(smp.CPUPSI),
		}
		if smp.HasNanoCores {
			cpu.UsageNanoCores = &runtimeapi.UInt64Value{Value: smp.NanoCores}
		}
	}
	var mem *runtimeapi.MemoryUsage
	if smp.HasMemory {
		mem = &runtimeapi.MemoryUsage{
			Timestamp:       ts,
			WorkingSetBytes: &runtimeapi.UInt64Value{Value: smp.MemoryWorking},
			UsageBytes:      &runtimeapi.UInt64Value{Value: smp.MemoryUsage},
			RssBytes:        &runtimeapi.UInt64Value{Value: smp.MemoryRSS},
			PageFaults:      &runtimeapi.UInt64Value{Value: smp.PageFaults},
			MajorPageFaults: &runtimeapi.UInt64Value{Value: smp.MajorPageFaults},
			Psi:             psiOf(smp.MemoryPSI),
		}
		if smp.MemoryLimit > 0 {
			avail := uint64(0)
			if smp.MemoryLimit > smp.MemoryWorking {
				avail = smp.MemoryLimit - smp.MemoryWorking
			}
			mem.AvailableBytes = &runtimeapi.UInt64Value{Value: avail}
		}
	}
	var swap *runtimeapi.SwapUsage
	if smp.HasSwap {
		swap = &runtimeapi.SwapUsage{Timestamp: ts, SwapUsageBytes: &runtimeapi.UInt64Value{Value: smp.SwapUsage}}
		if smp.SwapLimit > 0 && smp.SwapLimit >= smp.SwapUsage {
			swap.SwapAvailableBytes = &runtimeapi.UInt64Value{Value: smp.SwapLimit - smp.SwapUsage}
		}
	}
	var io *runtimeapi.IoUsage
	if smp.IOPSI != nil {
		io = &runtimeapi.IoUsage{Timestamp: ts, Psi: psiOf(smp.IOPSI)}
	}
	return cpu, mem, swap, io
}

func psiOf(p *stats.PSI) *runtimeapi.PsiStats {
	if p == nil {
		return nil
	}
	line := func(l stats.PSILine) *runtimeapi.PsiData {
		return &runtimeapi.PsiData{Total: l.Total, Avg10: l.Avg10, Avg60: l.Avg60, Avg300: l.Avg300}
	}
	return &runtimeapi.PsiStats{Some: line(p.Some), Full: line(p.Full)}
}

// unavailable is the error of an RPC whose backing part the daemon was
// started without.
func unavailable(what string) error {
	return status.Errorf(codes.Unavailable, "%s is not configured in this daemon", what)
}

func unavailableErr(msg string) error { return status.Error(codes.Unavailable, msg) }
