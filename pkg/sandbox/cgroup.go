package sandbox

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"golang.org/x/sys/unix"

	"github.com/pod-shim/pod-shim/pkg/oci"
)

// Resources are the limits of a pod (the sum of its containers') or of its
// overhead, as the CRI gives them. Zero means unset. The overhead adds to
// CPU and memory only.
type Resources struct {
	CPUPeriod   int64 // µs
	CPUQuota    int64 // µs per period
	CPUShares   int64
	MemoryLimit int64 // bytes

	MemorySwapLimit int64 // memory plus swap, bytes
	CpusetCPUs      string
	CpusetMems      string
	HugepageLimits  map[string]uint64 // by page size ("2MB")
	Unified         map[string]string // cgroup v2 files
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
	out := Resources{
		CPUShares:      r.CPUShares + o.CPUShares,
		CpusetCPUs:     r.CpusetCPUs,
		CpusetMems:     r.CpusetMems,
		HugepageLimits: r.HugepageLimits,
		Unified:        r.Unified,
	}
	if r.MemoryLimit > 0 {
		out.MemoryLimit = r.MemoryLimit + max(o.MemoryLimit, 0)
	}
	if r.MemorySwapLimit > 0 {
		// Memory plus swap: the overhead's memory counts in it too, or the
		// kernel refuses a memory limit over the swap one.
		out.MemorySwapLimit = r.MemorySwapLimit + max(o.MemoryLimit, 0)
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

// podCgroupResources are the pod's limits as opencontainers/cgroups takes
// them. The library does the v1 and v2 files and their conversions (shares
// to weight, quota and period to cpu.max) as runc does for the containers
// inside, so pod and container cgroups speak the same numbers.
// SkipDevices: the pod cgroup holds every container of the pod, and a
// device rule set here would deny them all their devices.
func podCgroupResources(l Resources) *cgroups.Resources {
	r := &cgroups.Resources{
		Memory:      l.MemoryLimit,
		MemorySwap:  l.MemorySwapLimit,
		CpuQuota:    l.CPUQuota,
		CpusetCpus:  l.CpusetCPUs,
		CpusetMems:  l.CpusetMems,
		Unified:     l.Unified,
		SkipDevices: true,
	}
	if l.CPUShares > 0 {
		r.CpuShares = uint64(l.CPUShares)
	}
	if l.CPUPeriod > 0 {
		r.CpuPeriod = uint64(l.CPUPeriod)
	}
	for _, size := range slices.Sorted(maps.Keys(l.HugepageLimits)) {
		r.HugetlbLimit = append(r.HugetlbLimit, &cgroups.HugepageLimit{Pagesize: size, Limit: l.HugepageLimits[size]})
	}
	return r
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
	return m.setPodCgroup(c.CgroupParent, podLimits(c.Resources, c.Overhead))
}

// UpdateResources applies the pod-level limits the kubelet computed for an
// in-place pod resize, plus the pod's overhead, to the pod's cgroup (its
// cgroup_parent). Nothing is stored: the kubelet owns that cgroup and
// resends on its next sync. The caller has validated r's names (hugepage
// sizes, unified keys), which become file names.
func (m *Manager) UpdateResources(ctx context.Context, idOrPrefix string, r *Resources) error {
	if r == nil {
		return nil
	}
	sb, unlock, err := m.lockAndLoad(ctx, idOrPrefix)
	if err != nil {
		return err
	}
	defer unlock()
	if sb.State != StateReady {
		return fmt.Errorf("sandbox %s: %w", sb.ID, ErrNotReady)
	}
	parent, err := podCgroupParent(m.opts.CgroupDriver, sb.Config.CgroupParent)
	if err != nil {
		return err
	}
	return m.setPodCgroup(parent, podLimits(r, sb.Config.Overhead))
}

// setPodCgroup makes the pod cgroup at parent (relative to the hierarchies'
// root) where it is missing and writes l into it: the one writer of pod
// cgroups.
func (m *Manager) setPodCgroup(parent string, l Resources) error {
	res := podCgroupResources(l)
	// The library's v1 controllers are one process-wide set that caches what
	// it detects in itself (blkio's weight file names), unlocked: runc makes
	// one manager per process, we make one per pod, concurrently.
	cgroupLibMu.Lock()
	defer cgroupLibMu.Unlock()
	mgr, err := cgroupManager(&cgroups.Cgroup{Path: filepath.Clean("/" + parent), Resources: res})
	if errors.Is(err, cgroups.ErrV1NoUnified) {
		return fmt.Errorf("unified cgroup resources need a cgroup v2 host: %w", ErrInvalid)
	}
	if err != nil {
		return fmt.Errorf("pod cgroup %s: %w", parent, err)
	}
	// -1 makes the cgroup without moving any process into it.
	if err := mgr.Apply(-1); err != nil {
		return fmt.Errorf("create pod cgroup %s: %w", parent, err)
	}
	if err := mgr.Set(res); err != nil {
		return fmt.Errorf("pod cgroup %s: %w", parent, err)
	}
	return nil
}

// cgroupManager is the library's manager for the host's cgroup version; a
// var so tests can check what reaches it without root.
var cgroupManager = manager.New

// cgroupLibMu serialises every use of the library's managers; see setPodCgroup.
var cgroupLibMu sync.Mutex

// podCgroupParent is the pod's cgroup (the kubelet's cgroup_parent)
// relative to a hierarchy's root, for the cgroup driver: a systemd slice
// name is expanded as systemd nests it ("kubepods-burstable-pod1.slice" is
// "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice").
func podCgroupParent(driver, parent string) (string, error) {
	if parent == "" {
		return "", fmt.Errorf("the pod has no cgroup_parent: %w", ErrInvalid)
	}
	if driver != "systemd" {
		return filepath.Clean("/" + parent), nil
	}
	slice := filepath.Base(parent)
	name, ok := strings.CutSuffix(slice, ".slice")
	if !ok || name == "" {
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

// cgroupHierarchies are the mount points of the host's cgroup trees, as
// pkg/oci finds them (cgroupRoot is a var for tests).
func cgroupHierarchies() []string { return oci.CgroupHierarchies(cgroupRoot) }

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
