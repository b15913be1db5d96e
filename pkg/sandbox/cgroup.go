package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
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
