package container

import (
	"os"
	"path/filepath"
	"strings"
)

// hugetlbAvailable says whether containers can be given hugepage limits:
// on a pure cgroup v2 host (root has cgroup.controllers) when the root lists
// hugetlb, elsewhere when a cgroup v1 hierarchy with the hugetlb controller
// is mounted under root (mountinfo is /proc/self/mountinfo's text). Where it
// is missing runc fails the whole container ("cannot set hugetlb limit"),
// while the kubelet sends hugepage limits (often 0) for every container; so
// they are dropped, as containerd does with disable_hugetlb_controller.
// A hybrid host's v2 mount (/sys/fs/cgroup/unified) does not count: runc
// applies limits through the v1 hierarchies there.
func hugetlbAvailable(root, mountinfo string) bool {
	if data, err := os.ReadFile(filepath.Join(root, "cgroup.controllers")); err == nil {
		for _, c := range strings.Fields(string(data)) {
			if c == "hugetlb" {
				return true
			}
		}
		return false
	}
	root = filepath.Clean(root)
	for _, line := range strings.Split(mountinfo, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || qf[0] != "cgroup" {
			continue
		}
		if mnt := pf[4]; mnt != root && !strings.HasPrefix(mnt, root+"/") {
			continue
		}
		for _, opt := range strings.Split(qf[2], ",") {
			if opt == "hugetlb" {
				return true
			}
		}
	}
	return false
}
