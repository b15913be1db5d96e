package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/pod-shim/pod-shim/pkg/oci"
)

// Resources are the CPU and memory figures of a pod (the sum of its
// containers') or of its overhead, as the CRI gives them. Zero means unset.
type Resources struct {
	CPUPeriod   int64 // µs
	CPUQuota    int64 // µs per period
	CPUShares   int64
	MemoryLimit int64 // bytes
}

// cgroupRoot is where the cgroup hierarchies are mounted; a var for tests.
var cgroupRoot = "/sys/fs/cgroup"

// podLimits adds the overhead to the pod's resources, as the kubelet sizes
// a pod cgroup: a limit is only set when the pod has one (an unlimited pod
// stays unlimited whatever its overhead), and CPU quota is summed per
// period of the pod's own.
func podLimits(res, over *Resources) Resources {
	var r, o Resources
	if res != nil {
		r = *res
	}
	if over != nil {
		o = *over
	}
	out := Resources{CPUShares: r.CPUShares + o.CPUShares}
	if r.MemoryLimit > 0 {
		out.MemoryLimit = r.MemoryLimit + max(o.MemoryLimit, 0)
	}
	if r.CPUQuota > 0 {
		out.CPUPeriod = r.CPUPeriod
		if out.CPUPeriod <= 0 {
			out.CPUPeriod = 100000
		}
		out.CPUQuota = r.CPUQuota
		if o.CPUQuota > 0 {
			op := o.CPUPeriod
			if op <= 0 {
				op = 100000
			}
			out.CPUQuota += o.CPUQuota * out.CPUPeriod / op
		}
	}
	return out
}

// cgroupFile is one value written into a pod cgroup.
type cgroupFile struct {
	controller string // v1 hierarchy; "" on v2
	name       string
	value      string
}

// podCgroupFiles are the files that carry limits on v1 (one hierarchy per
// controller) and v2 (one unified tree).
func podCgroupFiles(l Resources, v2 bool) []cgroupFile {
	var out []cgroupFile
	if v2 {
		if l.MemoryLimit > 0 {
			out = append(out, cgroupFile{"", "memory.max", strconv.FormatInt(l.MemoryLimit, 10)})
		}
		if l.CPUShares > 0 {
			// The conversion runc and the kubelet use: [2, 262144] → [1, 10000].
			w := 1 + ((min(max(l.CPUShares, 2), 262144)-2)*9999)/262142
			out = append(out, cgroupFile{"", "cpu.weight", strconv.FormatInt(w, 10)})
		}
		if l.CPUQuota > 0 {
			out = append(out, cgroupFile{"", "cpu.max", fmt.Sprintf("%d %d", l.CPUQuota, l.CPUPeriod)})
		}
		return out
	}
	if l.MemoryLimit > 0 {
		out = append(out, cgroupFile{"memory", "memory.limit_in_bytes", strconv.FormatInt(l.MemoryLimit, 10)})
	}
	if l.CPUShares > 0 {
		out = append(out, cgroupFile{"cpu", "cpu.shares", strconv.FormatInt(l.CPUShares, 10)})
	}
	if l.CPUQuota > 0 {
		// Period first: the kernel checks the quota against it.
		out = append(out, cgroupFile{"cpu", "cpu.cfs_period_us", strconv.FormatInt(l.CPUPeriod, 10)},
			cgroupFile{"cpu", "cpu.cfs_quota_us", strconv.FormatInt(l.CPUQuota, 10)})
	}
	return out
}

// applyPodResources sizes the pod cgroup (the sandbox's cgroup_parent, which
// holds pause and every container of the pod) to the pod's resources plus
// its overhead, before pause starts in it. Under a kubelet this writes the
// values it writes itself; for crictl users it is the only pod-level limit.
// Without a cgroup_parent the pods share pod-shim's default parent, which no
// single pod may size; the systemd driver's slices are systemd's to size.
func (m *Manager) applyPodResources(sb *Sandbox) error {
	c := sb.Config
	if c.Resources == nil && c.Overhead == nil {
		return nil
	}
	if c.CgroupParent == "" || m.opts.CgroupDriver != "cgroupfs" {
		m.log.Info("pod resources not applied to a pod cgroup", "sandbox", sb.ID,
			"reason", "needs a cgroup_parent and the cgroupfs driver", "driver", m.opts.CgroupDriver)
		return nil
	}
	limits := podLimits(c.Resources, c.Overhead)
	var st unix.Statfs_t
	v2 := unix.Statfs(cgroupRoot, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
	for _, f := range podCgroupFiles(limits, v2) {
		dir := filepath.Join(cgroupRoot, f.controller, filepath.Clean("/"+c.CgroupParent))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("pod cgroup: %w", err)
		}
		err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.value), 0o644)
		if errors.Is(err, os.ErrNotExist) {
			// A controller this kernel lacks (no CFS bandwidth, say).
			m.log.Warn("pod cgroup: controller file missing", "sandbox", sb.ID, "file", filepath.Join(dir, f.name))
			continue
		}
		if err != nil {
			return fmt.Errorf("pod cgroup %s=%s: %w", filepath.Join(dir, f.name), f.value, err)
		}
	}
	return nil
}

// cgroupHierarchies are the mount points of the host's cgroup trees: the
// one unified tree on v2, or each v1 hierarchy (and a hybrid host's empty
// "unified" one, which runc populates too). Symlinks such as cpu ->
// cpu,cpuacct name a hierarchy already listed.
func cgroupHierarchies() []string {
	var st unix.Statfs_t
	return hierarchiesUnder(cgroupRoot, unix.Statfs(cgroupRoot, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC)
}

func hierarchiesUnder(root string, v2 bool) []string { return oci.HierarchiesUnder(root, v2) }

// podCgroupDirs lists, deepest first, the directories of the pod's
// cgroup_parent that do not exist yet in any hierarchy: the ones this pod's
// Run makes (applyPodResources, or runc for pause), and so the ones Remove
// takes away again. A parent that exists already is someone else's: under
// a kubelet it is the pod cgroup the kubelet made before RunPodSandbox and
// removes itself after RemovePodSandbox, and containerd, like us, leaves it
// alone. Without a cgroup_parent the pods share pod-shim's default parent;
// the systemd driver's slices are systemd's to remove.
func (m *Manager) podCgroupDirs(c Config) []string {
	if c.CgroupParent == "" || m.opts.CgroupDriver != "cgroupfs" {
		return nil
	}
	parent := filepath.Clean("/" + c.CgroupParent)
	if parent == "/" {
		return nil
	}
	return newCgroupDirs(cgroupHierarchies(), parent)
}

// newCgroupDirs lists parent's directories missing under each hierarchy.
func newCgroupDirs(hierarchies []string, parent string) []string {
	var out []string
	for _, h := range hierarchies {
		// Deepest first, up to the first ancestor that exists.
		for p := parent; p != "/"; p = filepath.Dir(p) {
			dir := filepath.Join(h, p)
			if _, err := os.Stat(dir); err == nil || !errors.Is(err, os.ErrNotExist) {
				break
			}
			out = append(out, dir)
		}
	}
	return out
}

// removePodCgroups removes the cgroup_parent directories this pod's Run
// created, deepest first, once runc has removed pause's own cgroup below
// them. rmdir on a cgroup fails while it holds a process or a child
// cgroup, so a parent another pod still uses stays (EBUSY), and the last
// of the pods to go removes it. Nothing else is an error worth failing a
// Remove for: what is left is only an empty directory, and it is logged.
func (m *Manager) removePodCgroups(sb *Sandbox) {
	for _, dir := range sb.CreatedCgroups {
		err := unix.Rmdir(dir)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT):
		case errors.Is(err, unix.EBUSY), errors.Is(err, unix.ENOTEMPTY):
			m.log.Info("pod cgroup still in use; left in place", "sandbox", sb.ID, "cgroup", dir)
		default:
			m.log.Warn("remove pod cgroup", "sandbox", sb.ID, "cgroup", dir, "error", err)
		}
	}
}
