package cri

import (
	"context"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/pkg/container"
)

// ImageFsInfo reports the space and inodes images use and, separately, the
// containers' writable layers (where the image store keeps them), as the kubelet's
// split image/container filesystem eviction expects.
func (s *Server) ImageFsInfo(ctx context.Context, r *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	u, err := s.images.FsInfo()
	if err != nil {
		return nil, err
	}
	now := time.Now().UnixNano()
	fs := &runtimeapi.FilesystemUsage{
		Timestamp:  now,
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: u.Mountpoint},
		UsedBytes:  &runtimeapi.UInt64Value{Value: u.UsedBytes},
		InodesUsed: &runtimeapi.UInt64Value{Value: u.InodesUsed},
	}
	resp := &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{fs}}
	if cfs := s.containerFsUsage(now); cfs != nil {
		// The kubelet treats different mountpoints as a split disk (image
		// GC and eviction per disk). Name the image filesystem's mountpoint
		// when the writable layers live on the same device, as containerd
		// and CRI-O do.
		if sameDevice(u.Mountpoint, cfs.FsId.Mountpoint) {
			cfs.FsId.Mountpoint = u.Mountpoint
		}
		resp.ContainerFilesystems = []*runtimeapi.FilesystemUsage{cfs}
	}
	return resp, nil
}

// containerFsUsage sums the writable layers of the containers the store
// knows. Each layer's walk is the stats collector's, cached (the kubelet
// asks for stats and for this on the same cadence), so a call does not
// walk every layer again.
func (s *Server) containerFsUsage(now int64) *runtimeapi.FilesystemUsage {
	if s.stats == nil || s.images == nil || s.containers == nil {
		return nil
	}
	cs, err := s.containers.List(container.Filter{})
	if err != nil {
		s.log.Debug("ImageFsInfo: list containers", "error", err)
		return nil
	}
	var bytes, inodes uint64
	for _, c := range cs {
		upper, err := s.images.WritableLayer(c.ID)
		if err != nil {
			continue
		}
		l := s.stats.collector.Layer(c.ID, upper)
		bytes += l.Bytes
		inodes += l.Inodes
	}
	return &runtimeapi.FilesystemUsage{
		Timestamp:  now,
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: s.images.WritableLayersRoot()},
		UsedBytes:  &runtimeapi.UInt64Value{Value: bytes},
		InodesUsed: &runtimeapi.UInt64Value{Value: inodes},
	}
}

func sameDevice(a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
		return true // a missing dir holds nothing of another disk
	}
	return sa.Dev == sb.Dev
}
