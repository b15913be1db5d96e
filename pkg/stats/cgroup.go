// Package stats reads resource usage of containers and pods straight from
// the kernel: cgroup files (v1 and v2), the pod's network namespace and the
// container's writable layer. It forks nothing, so a stats call over a
// hundred containers costs file reads only.
package stats

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/cgroups"
)

// Cgroup is one sample of a cgroup's counters. A field whose file is missing
// (controller not mounted, kernel too old) is left zero and its Has flag false.
type Cgroup struct {
	Time time.Time

	HasCPU        bool
	CPUUsageNanos uint64 // cumulative, all cores

	HasMemory       bool
	MemoryUsage     uint64
	MemoryWorking   uint64 // usage - inactive_file, the kubelet's eviction signal
	MemoryRSS       uint64
	PageFaults      uint64
	MajorPageFaults uint64
	MemoryLimit     uint64 // 0 = unlimited
	HasSwap         bool
	SwapUsage       uint64
	SwapLimit       uint64 // 0 = unlimited

	HasPids bool
	Pids    uint64

	// Pressure stall information, v2 only (and only with CONFIG_PSI).
	CPUPSI, MemoryPSI, IOPSI *PSI
}

// PSI is one resource's pressure: the some and full lines.
type PSI struct {
	Some, Full PSILine
}

// PSILine is one line of a *.pressure file; Total is in nanoseconds.
type PSILine struct {
	Avg10, Avg60, Avg300 float64
	Total                uint64
}

// Hierarchy knows where the cgroup controllers are mounted.
type Hierarchy struct {
	// Unified is the cgroup v2 mount when the host runs pure v2; "" on v1
	// and hybrid hosts.
	Unified string
	// V1 maps a controller (cpuacct, memory, pids) to its mount on v1.
	V1 map[string]string
}

// unlimited is what v1 reports as a memory limit when there is none: the
// largest page-aligned int64.
const unlimitedV1 = 0x7FFFFFFFFFFFF000

// Detect finds this host's cgroup controllers, mounted under root (normally
// /sys/fs/cgroup): the unified hierarchy on a pure v2 host, else each v1
// controller's mount under root (a hybrid host's empty v2 mount at
// root/unified holds none of them). Which mode the host runs and where the
// v1 controllers are mounted come from opencontainers/cgroups, as for runc.
func Detect(root string) (*Hierarchy, error) {
	root = filepath.Clean(root)
	if cgroups.IsCgroup2UnifiedMode() {
		return &Hierarchy{Unified: root}, nil
	}
	mounts, err := cgroups.GetCgroupMounts(false)
	if err != nil {
		return nil, fmt.Errorf("cgroup v1 mounts: %w", err)
	}
	h := &Hierarchy{V1: map[string]string{}}
	for _, m := range mounts {
		if m.Mountpoint != root && !strings.HasPrefix(m.Mountpoint, root+"/") {
			continue
		}
		for _, sub := range m.Subsystems {
			switch sub {
			case "cpuacct", "memory", "pids", "cpu", "blkio", "hugetlb":
				if _, ok := h.V1[sub]; !ok {
					h.V1[sub] = m.Mountpoint
				}
			}
		}
	}
	if len(h.V1) == 0 {
		return nil, fmt.Errorf("no cgroup controllers mounted under %s", root)
	}
	return h, nil
}

// Read samples the cgroup at path (as in an OCI spec's linux.cgroupsPath with
// the cgroupfs driver: absolute within each hierarchy).
func (h *Hierarchy) Read(path string) (*Cgroup, error) {
	path = filepath.Clean("/" + path)
	if h.Unified != "" {
		return readV2(filepath.Join(h.Unified, path))
	}
	return h.readV1(path)
}

// Exists says whether the cgroup is there (in the memory hierarchy on v1).
func (h *Hierarchy) Exists(path string) bool {
	path = filepath.Clean("/" + path)
	dir := filepath.Join(h.Unified, path)
	if h.Unified == "" {
		mnt, ok := h.V1["memory"]
		if !ok {
			mnt = h.V1["cpuacct"]
		}
		dir = filepath.Join(mnt, path)
	}
	_, err := os.Stat(dir)
	return err == nil
}

func (h *Hierarchy) readV1(path string) (*Cgroup, error) {
	s := &Cgroup{Time: time.Now()}
	found := false
	if mnt, ok := h.V1["cpuacct"]; ok {
		if v, err := readUint(filepath.Join(mnt, path, "cpuacct.usage")); err == nil {
			s.HasCPU, s.CPUUsageNanos, found = true, v, true
		}
	}
	if mnt, ok := h.V1["memory"]; ok {
		dir := filepath.Join(mnt, path)
		if usage, err := readUint(filepath.Join(dir, "memory.usage_in_bytes")); err == nil {
			found = true
			s.HasMemory, s.MemoryUsage = true, usage
			if st, err := readKV(filepath.Join(dir, "memory.stat")); err == nil {
				applyV1MemoryStat(s, st)
			}
			if lim, err := readUint(filepath.Join(dir, "memory.limit_in_bytes")); err == nil && lim < unlimitedV1 {
				s.MemoryLimit = lim
			}
			// memsw counts memory plus swap; it exists only with swap accounting.
			if sw, err := readUint(filepath.Join(dir, "memory.memsw.usage_in_bytes")); err == nil {
				s.HasSwap = true
				if sw > usage {
					s.SwapUsage = sw - usage
				}
				if lim, err := readUint(filepath.Join(dir, "memory.memsw.limit_in_bytes")); err == nil && lim < unlimitedV1 && lim > s.MemoryLimit {
					s.SwapLimit = lim - s.MemoryLimit
				}
			}
		}
	}
	if mnt, ok := h.V1["pids"]; ok {
		if v, err := readUint(filepath.Join(mnt, path, "pids.current")); err == nil {
			s.HasPids, s.Pids, found = true, v, true
		}
	}
	if !found {
		return nil, fmt.Errorf("cgroup %s: %w", path, os.ErrNotExist)
	}
	return s, nil
}

// applyV1MemoryStat fills the memory.stat derived fields. The total_* keys
// include descendants, which is what a pod-level cgroup needs.
func applyV1MemoryStat(s *Cgroup, st map[string]uint64) {
	pick := func(k string) uint64 {
		if v, ok := st["total_"+k]; ok {
			return v
		}
		return st[k]
	}
	s.MemoryRSS = pick("rss")
	s.PageFaults = pick("pgfault")
	s.MajorPageFaults = pick("pgmajfault")
	s.MemoryWorking = workingSet(s.MemoryUsage, pick("inactive_file"))
}

func readV2(dir string) (*Cgroup, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	s := &Cgroup{Time: time.Now()}
	if st, err := readKV(filepath.Join(dir, "cpu.stat")); err == nil {
		if v, ok := st["usage_usec"]; ok {
			s.HasCPU, s.CPUUsageNanos = true, v*1000
		}
	}
	if usage, err := readUint(filepath.Join(dir, "memory.current")); err == nil {
		s.HasMemory, s.MemoryUsage = true, usage
		if st, err := readKV(filepath.Join(dir, "memory.stat")); err == nil {
			s.MemoryRSS = st["anon"]
			s.PageFaults = st["pgfault"]
			s.MajorPageFaults = st["pgmajfault"]
			s.MemoryWorking = workingSet(usage, st["inactive_file"])
		}
		if lim, err := readMax(filepath.Join(dir, "memory.max")); err == nil {
			s.MemoryLimit = lim
		}
		if sw, err := readUint(filepath.Join(dir, "memory.swap.current")); err == nil {
			s.HasSwap, s.SwapUsage = true, sw
			if lim, err := readMax(filepath.Join(dir, "memory.swap.max")); err == nil {
				s.SwapLimit = lim
			}
		}
	}
	if v, err := readUint(filepath.Join(dir, "pids.current")); err == nil {
		s.HasPids, s.Pids = true, v
	}
	s.CPUPSI, _ = readPSI(filepath.Join(dir, "cpu.pressure"))
	s.MemoryPSI, _ = readPSI(filepath.Join(dir, "memory.pressure"))
	s.IOPSI, _ = readPSI(filepath.Join(dir, "io.pressure"))
	return s, nil
}

func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile >= usage {
		return 0
	}
	return usage - inactiveFile
}

func readUint(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(string(bytes.TrimSpace(data)), 10, 64)
}

// readMax reads a v2 limit file: "max" is 0 (unlimited).
func readMax(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v := string(bytes.TrimSpace(data))
	if v == "max" {
		return 0, nil
	}
	return strconv.ParseUint(v, 10, 64)
}

func readKV(path string) (map[string]uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseKV(data), nil
}

// parseKV parses "key value" lines (memory.stat, cpu.stat).
func parseKV(data []byte) map[string]uint64 {
	out := make(map[string]uint64, 64)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

func readPSI(path string) (*PSI, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parsePSI(data)
}

// parsePSI parses a pressure file:
//
//	some avg10=0.00 avg60=0.00 avg300=0.00 total=0
//	full avg10=0.00 avg60=0.00 avg300=0.00 total=0
//
// total is in microseconds; PSILine.Total is converted to nanoseconds.
func parsePSI(data []byte) (*PSI, error) {
	p := &PSI{}
	seen := false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		var l *PSILine
		switch f[0] {
		case "some":
			l = &p.Some
		case "full":
			l = &p.Full
		default:
			continue
		}
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			switch k {
			case "avg10":
				l.Avg10, _ = strconv.ParseFloat(v, 64)
			case "avg60":
				l.Avg60, _ = strconv.ParseFloat(v, 64)
			case "avg300":
				l.Avg300, _ = strconv.ParseFloat(v, 64)
			case "total":
				t, _ := strconv.ParseUint(v, 10, 64)
				l.Total = t * 1000
			}
		}
		seen = true
	}
	if !seen {
		return nil, errors.New("no pressure lines")
	}
	return p, nil
}

// Add sums b into a; used for a pod whose containers have sibling cgroups.
func (a *Cgroup) Add(b *Cgroup) {
	a.HasCPU = a.HasCPU || b.HasCPU
	a.CPUUsageNanos += b.CPUUsageNanos
	a.HasMemory = a.HasMemory || b.HasMemory
	a.MemoryUsage += b.MemoryUsage
	a.MemoryWorking += b.MemoryWorking
	a.MemoryRSS += b.MemoryRSS
	a.PageFaults += b.PageFaults
	a.MajorPageFaults += b.MajorPageFaults
	a.HasSwap = a.HasSwap || b.HasSwap
	a.SwapUsage += b.SwapUsage
	a.HasPids = a.HasPids || b.HasPids
	a.Pids += b.Pids
	if b.Time.After(a.Time) {
		a.Time = b.Time
	}
}
