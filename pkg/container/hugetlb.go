package container

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// hugetlbAvailable says whether containers can be given hugepage limits:
// on a pure cgroup v2 host when root's cgroup.controllers lists hugetlb,
// elsewhere when a cgroup v1 hierarchy with the hugetlb controller is
// mounted under root. Where it is missing runc fails the whole container
// ("cannot set hugetlb limit"), while the kubelet sends hugepage limits
// (often 0) for every container; so they are dropped, as containerd does
// with disable_hugetlb_controller. A hybrid host's v2 mount
// (/sys/fs/cgroup/unified) does not count: runc applies limits through the
// v1 hierarchies there.
func hugetlbAvailable(v2 bool, root string, mounts []*mountinfo.Info) bool {
	if v2 {
		data, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		return err == nil && slices.Contains(strings.Fields(string(data)), "hugetlb")
	}
	root = filepath.Clean(root)
	for _, mi := range mounts {
		if mi.FSType != "cgroup" {
			continue
		}
		if mi.Mountpoint != root && !strings.HasPrefix(mi.Mountpoint, root+"/") {
			continue
		}
		if slices.Contains(strings.Split(mi.VFSOptions, ","), "hugetlb") {
			return true
		}
	}
	return false
}
