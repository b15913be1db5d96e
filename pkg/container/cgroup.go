package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// cgroupWrite is one value for one cgroup file: Controller is the v1
// hierarchy ("" on v2, where every file is in one dir).
type cgroupWrite struct {
	Controller, File, Value string
}

// expandSlice turns a systemd slice name into its cgroup path, as systemd
// nests it: "kubepods-burstable-pod1.slice" is
// "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice".
func expandSlice(slice string) (string, error) {
	name, ok := strings.CutSuffix(slice, ".slice")
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("invalid systemd slice %q: %w", slice, ErrInvalid)
	}
	if name == "-" {
		return "/", nil
	}
	var path, prefix string
	for _, part := range strings.Split(name, "-") {
		if part == "" {
			return "", fmt.Errorf("invalid systemd slice %q: %w", slice, ErrInvalid)
		}
		path += "/" + prefix + part + ".slice"
		prefix += part + "-"
	}
	return path, nil
}

// podCgroupPath is the pod's cgroup (the kubelet's cgroup_parent) relative
// to a hierarchy's root, for the cgroup driver.
func podCgroupPath(driver, parent string) (string, error) {
	if parent == "" {
		return "", fmt.Errorf("the pod has no cgroup_parent: %w", ErrInvalid)
	}
	if driver == "systemd" {
		return expandSlice(filepath.Base(parent))
	}
	return filepath.Clean("/" + parent), nil
}

// cgroupV1Writes translates r to cgroup v1 files.
func cgroupV1Writes(r *Resources) []cgroupWrite {
	var w []cgroupWrite
	add := func(ctrl, file string, v int64) { w = append(w, cgroupWrite{ctrl, file, strconv.FormatInt(v, 10)}) }
	if r.CPUShares > 0 {
		add("cpu", "cpu.shares", r.CPUShares)
	}
	if r.CPUPeriod > 0 {
		add("cpu", "cpu.cfs_period_us", r.CPUPeriod)
	}
	if r.CPUQuota != 0 {
		add("cpu", "cpu.cfs_quota_us", r.CPUQuota)
	}
	if r.CpusetCPUs != "" {
		w = append(w, cgroupWrite{"cpuset", "cpuset.cpus", r.CpusetCPUs})
	}
	if r.CpusetMems != "" {
		w = append(w, cgroupWrite{"cpuset", "cpuset.mems", r.CpusetMems})
	}
	if r.MemoryLimit > 0 {
		// Raise memsw first when it grows past the old limit; the
		// kernel wants memory <= memsw at every step.
		if r.MemorySwapLimit > 0 {
			add("memory", "memory.memsw.limit_in_bytes", -1)
		}
		add("memory", "memory.limit_in_bytes", r.MemoryLimit)
		if r.MemorySwapLimit > 0 {
			add("memory", "memory.memsw.limit_in_bytes", r.MemorySwapLimit)
		}
	}
	for _, size := range sortedKeys(r.HugepageLimits) {
		w = append(w, cgroupWrite{"hugetlb", "hugetlb." + size + ".limit_in_bytes", strconv.FormatUint(r.HugepageLimits[size], 10)})
	}
	return w
}

// cgroupV2Writes translates r to cgroup v2 files, as runc does: shares to
// weight, quota/period to cpu.max, swap as the swap on top of memory.
func cgroupV2Writes(r *Resources) []cgroupWrite {
	var w []cgroupWrite
	if r.CPUShares > 0 {
		w = append(w, cgroupWrite{"", "cpu.weight", strconv.FormatUint(sharesToWeight(uint64(r.CPUShares)), 10)})
	}
	if r.CPUQuota != 0 || r.CPUPeriod > 0 {
		quota := "max"
		if r.CPUQuota > 0 {
			quota = strconv.FormatInt(r.CPUQuota, 10)
		}
		period := r.CPUPeriod
		if period <= 0 {
			period = 100000
		}
		w = append(w, cgroupWrite{"", "cpu.max", quota + " " + strconv.FormatInt(period, 10)})
	}
	if r.CpusetCPUs != "" {
		w = append(w, cgroupWrite{"", "cpuset.cpus", r.CpusetCPUs})
	}
	if r.CpusetMems != "" {
		w = append(w, cgroupWrite{"", "cpuset.mems", r.CpusetMems})
	}
	if r.MemoryLimit > 0 {
		w = append(w, cgroupWrite{"", "memory.max", strconv.FormatInt(r.MemoryLimit, 10)})
		if r.MemorySwapLimit > 0 {
			swap := r.MemorySwapLimit - r.MemoryLimit
			if swap < 0 {
				swap = 0
			}
			w = append(w, cgroupWrite{"", "memory.swap.max", strconv.FormatInt(swap, 10)})
		}
	}
	for _, size := range sortedKeys(r.HugepageLimits) {
		w = append(w, cgroupWrite{"", "hugetlb." + size + ".max", strconv.FormatUint(r.HugepageLimits[size], 10)})
	}
	for _, k := range sortedKeys(r.Unified) {
		w = append(w, cgroupWrite{"", k, r.Unified[k]})
	}
	return w
}

// sharesToWeight is runc's (and the kernel docs') cpu.shares → cpu.weight
// mapping: [2, 262144] onto [1, 10000].
func sharesToWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	if shares < 2 {
		shares = 2
	}
	if shares > 262144 {
		shares = 262144
	}
	return 1 + ((shares-2)*9999)/262142
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// applyCgroup writes r into the cgroup at rel under root (/sys/fs/cgroup):
// one unified dir on a pure v2 host, else the v1 controllers' dirs.
func applyCgroup(v2 bool, root, rel string, r *Resources) error {
	if v2 {
		for _, cw := range cgroupV2Writes(r) {
			if err := writeCgroupFile(filepath.Join(root, rel, cw.File), cw.Value); err != nil {
				return err
			}
		}
		return nil
	}
	if len(r.Unified) > 0 {
		return fmt.Errorf("unified cgroup resources need a cgroup v2 host: %w", ErrInvalid)
	}
	for _, cw := range cgroupV1Writes(r) {
		if err := writeCgroupFile(filepath.Join(root, cw.Controller, rel, cw.File), cw.Value); err != nil {
			return err
		}
	}
	return nil
}

func writeCgroupFile(path, value string) error {
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cgroup file %s: %w", path, err)
		}
		return fmt.Errorf("write %q to %s: %w", value, path, err)
	}
	return nil
}

// UpdatePodResources applies the pod-level limits the kubelet computed
// (in-place pod resize) to the pod's cgroup, its cgroup_parent. Nothing is
// stored: the kubelet owns that cgroup and resends on its next sync.
func (m *Manager) UpdatePodResources(sandboxID string, r *Resources) error {
	if r == nil {
		return nil
	}
	if err := validateResources(r); err != nil {
		return err
	}
	sb, err := m.sandboxes.Get(sandboxID)
	if err != nil {
		return err
	}
	if sb.State != sandbox.StateReady {
		return fmt.Errorf("sandbox %s: %w", sb.ID, sandbox.ErrNotReady)
	}
	rel, err := podCgroupPath(m.opts.CgroupDriver, sb.Config.CgroupParent)
	if err != nil {
		return err
	}
	if !m.hugetlb && len(r.HugepageLimits) > 0 {
		nr := *r
		nr.HugepageLimits = nil
		r = &nr
	}
	return applyCgroup(cgroups.IsCgroup2UnifiedMode(), "/sys/fs/cgroup", rel, r)
}
