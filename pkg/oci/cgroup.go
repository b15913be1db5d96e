package oci

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// CgroupRoot is where the host's cgroup trees are mounted.
const CgroupRoot = "/sys/fs/cgroup"

// CgroupHierarchies are the mount points of the host's cgroup trees under
// root: the one unified tree on v2, or each v1 hierarchy (and a hybrid
// host's "unified" one, which runc populates too). Symlinks such as
// cpu -> cpu,cpuacct name a hierarchy already listed and are skipped.
//
// The host's cgroup version is opencontainers/cgroups' answer, as runc's;
// only a root other than CgroupRoot (a test's tree) is judged by itself.
func CgroupHierarchies(root string) []string {
	if root == CgroupRoot {
		return HierarchiesUnder(root, cgroups.IsCgroup2UnifiedMode())
	}
	var st unix.Statfs_t
	return HierarchiesUnder(root, unix.Statfs(root, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC)
}

// HierarchiesUnder is CgroupHierarchies with the cgroup version given.
func HierarchiesUnder(root string, v2 bool) []string {
	if v2 {
		return []string{root}
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() { // DirEntry does not follow symlinks
			out = append(out, filepath.Join(root, e.Name()))
		}
	}
	return out
}

// RemoveCgroup removes a container's own cgroup (cgroupfs driver) from
// every hierarchy, if it is still there and empty. runc removes it on
// delete; this is for when runc cannot: its state was lost with the state
// dir (a reboot, or its simulation) or the runtime is gone. A cgroup that
// still holds a process stays (EBUSY), and so does anything of the systemd
// driver, whose scopes systemd removes.
func RemoveCgroup(driver, cgroupsPath string) {
	if driver == "systemd" || cgroupsPath == "" || strings.Contains(cgroupsPath, ":") {
		return
	}
	rel := filepath.Clean("/" + cgroupsPath)
	if rel == "/" {
		return
	}
	for _, h := range CgroupHierarchies(CgroupRoot) {
		// Errors are not reported: absent (ENOENT) is the common case, in
		// use (EBUSY) means it is not ours to remove, and anything else
		// leaves at worst an empty directory.
		_ = unix.Rmdir(filepath.Join(h, rel))
	}
}
