package container

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// applyPropagation sets the rootfs propagation that rslave and rshared bind
// mounts need, as containerd does: runc makes the container's root rslave
// by default, so an rshared bind mount under it would get a peer group of
// its own and a mount made inside would never reach the host. With
// mountInfo (the daemon's /proc/self/mountinfo) the sources are checked
// too: a mount under a private source cannot propagate, and saying so at
// create beats a pod that silently never sees its volume's mounts.
func applyPropagation(s *specs.Spec, mounts []Mount, mountInfo []*mountinfo.Info) error {
	for _, m := range mounts {
		if m.Image != "" || m.HostPath == "" {
			continue
		}
		switch m.Propagation {
		case PropagationBidirectional:
			if mountInfo != nil {
				if shared, _ := sourcePropagation(mountInfo, m.HostPath); !shared {
					return fmt.Errorf("mount %s: bidirectional propagation needs %s on a shared mount: %w", m.ContainerPath, m.HostPath, ErrInvalid)
				}
			}
			s.Linux.RootfsPropagation = "rshared"
		case PropagationHostToContainer:
			if mountInfo != nil {
				if shared, slave := sourcePropagation(mountInfo, m.HostPath); !shared && !slave {
					return fmt.Errorf("mount %s: host-to-container propagation needs %s on a shared or slave mount: %w", m.ContainerPath, m.HostPath, ErrInvalid)
				}
			}
			if s.Linux.RootfsPropagation != "rshared" {
				s.Linux.RootfsPropagation = "rslave"
			}
		}
	}
	return nil
}

// sourcePropagation reports the propagation of the mount that holds path
// (the longest mount point that is a prefix of it, the last such mount when
// several are stacked), from mountinfo's optional fields.
func sourcePropagation(mounts []*mountinfo.Info, path string) (shared, slave bool) {
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	path = filepath.Clean(path)
	best := -1
	for _, mi := range mounts {
		point := mi.Mountpoint
		if point != path && point != "/" && !strings.HasPrefix(path, point+"/") {
			continue
		}
		if len(point) < best {
			continue
		}
		best = len(point)
		shared, slave = false, false
		for _, opt := range strings.Fields(mi.Optional) {
			shared = shared || strings.HasPrefix(opt, "shared:")
			slave = slave || strings.HasPrefix(opt, "master:")
		}
	}
	return shared, slave
}

// readMountInfo is the daemon's mount table, nil when unreadable (the
// checks are then skipped and runc has the last word).
func readMountInfo() []*mountinfo.Info {
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil
	}
	return mounts
}
