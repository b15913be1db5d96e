package stats

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Extra is what cadvisor-compatible metrics need beyond Cgroup: CPU split
// and throttling, the cgroup's limits, memory detail, block I/O and
// hugetlb counters, and the tasks' threads. Zero where the host lacks the
// file; the Has flags say which groups were read.
type Extra struct {
	HasCPUStat                 bool
	CPUUserNanos, CPUSysNanos  uint64
	CFSPeriods, CFSThrottled   uint64
	CFSThrottledNanos          uint64
	CPUPeriod, CPUShares       uint64
	CPUQuota                   int64 // -1: no quota
	HasMemory                  bool
	MemoryCache, MemoryMapped  uint64
	MemoryKernel               uint64
	MemoryMaxUsage, MemFailcnt uint64
	MemoryLimit                uint64 // 0 = unlimited
	MemorySoftLimit            uint64 // 0 = none
	MemorySwapLimit            uint64 // memory+swap as cadvisor reports it; 0 = unlimited
	OOMEvents                  uint64
	HasThreads                 bool
	Threads, ThreadsMax        uint64 // pids.current and pids.max (0 = unlimited)
	Blkio                      []BlkioStat
	HugeTLB                    []HugeTLBStat
	Procs                      []int // the cgroup's processes
}

// BlkioStat is one device's I/O in one direction.
type BlkioStat struct {
	Major, Minor uint64
	Op           string // Read, Write
	Bytes, Ops   uint64
}

// HugeTLBStat is one page size's usage.
type HugeTLBStat struct {
	PageSize        string // as in the file names: 2MB, 1GB
	Usage, MaxUsage uint64
}

// ReadExtra samples the Extra counters of the cgroup at path.
func (h *Hierarchy) ReadExtra(path string) *Extra {
	path = filepath.Clean("/" + path)
	if h.Unified != "" {
		return readExtraV2(filepath.Join(h.Unified, path))
	}
	e := &Extra{CPUQuota: -1}
	dir := func(ctrl string) (string, bool) {
		mnt, ok := h.V1[ctrl]
		return filepath.Join(mnt, path), ok
	}
	if d, ok := dir("cpuacct"); ok {
		// cpuacct.usage_user/_sys are nanoseconds; cpuacct.stat is in ticks.
		u, err1 := readUint(filepath.Join(d, "cpuacct.usage_user"))
		s, err2 := readUint(filepath.Join(d, "cpuacct.usage_sys"))
		if err1 == nil && err2 == nil {
			e.HasCPUStat, e.CPUUserNanos, e.CPUSysNanos = true, u, s
		} else if st, err := readKV(filepath.Join(d, "cpuacct.stat")); err == nil {
			const tick = uint64(time.Second / 100) // USER_HZ
			e.HasCPUStat, e.CPUUserNanos, e.CPUSysNanos = true, st["user"]*tick, st["system"]*tick
		}
	}
	if d, ok := dir("cpu"); ok {
		if st, err := readKV(filepath.Join(d, "cpu.stat")); err == nil {
			e.CFSPeriods, e.CFSThrottled, e.CFSThrottledNanos = st["nr_periods"], st["nr_throttled"], st["throttled_time"]
		}
		e.CPUPeriod, _ = readUint(filepath.Join(d, "cpu.cfs_period_us"))
		e.CPUShares, _ = readUint(filepath.Join(d, "cpu.shares"))
		if q, err := readInt(filepath.Join(d, "cpu.cfs_quota_us")); err == nil && q > 0 {
			e.CPUQuota = q
		}
	}
	if d, ok := dir("memory"); ok {
		if st, err := readKV(filepath.Join(d, "memory.stat")); err == nil {
			e.HasMemory = true
			pick := func(k string) uint64 {
				if v, ok := st["total_"+k]; ok {
					return v
				}
				return st[k]
			}
			e.MemoryCache, e.MemoryMapped = pick("cache"), pick("mapped_file")
		}
		e.MemoryKernel, _ = readUint(filepath.Join(d, "memory.kmem.usage_in_bytes"))
		e.MemoryMaxUsage, _ = readUint(filepath.Join(d, "memory.max_usage_in_bytes"))
		e.MemFailcnt, _ = readUint(filepath.Join(d, "memory.failcnt"))
		e.MemoryLimit = limitV1(filepath.Join(d, "memory.limit_in_bytes"))
		e.MemorySoftLimit = limitV1(filepath.Join(d, "memory.soft_limit_in_bytes"))
		e.MemorySwapLimit = limitV1(filepath.Join(d, "memory.memsw.limit_in_bytes"))
		if st, err := readKV(filepath.Join(d, "memory.oom_control")); err == nil {
			e.OOMEvents = st["oom_kill"]
		}
		e.Procs = readProcs(filepath.Join(d, "cgroup.procs"))
	}
	if d, ok := dir("pids"); ok {
		if v, err := readUint(filepath.Join(d, "pids.current")); err == nil {
			e.HasThreads, e.Threads = true, v
			e.ThreadsMax, _ = readMax(filepath.Join(d, "pids.max"))
		}
	}
	if d, ok := dir("blkio"); ok {
		// The throttle files count I/O under every scheduler; the
		// _recursive ones include descendants (a pod's containers).
		for _, f := range []string{"blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_service_bytes"} {
			if data, err := os.ReadFile(filepath.Join(d, f)); err == nil {
				e.Blkio = parseBlkioV1(data, filepath.Join(d, strings.Replace(f, "service_bytes", "serviced", 1)))
				break
			}
		}
	}
	if d, ok := dir("hugetlb"); ok {
		matches, _ := filepath.Glob(filepath.Join(d, "hugetlb.*.usage_in_bytes"))
		for _, m := range matches {
			size := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m), "hugetlb."), ".usage_in_bytes")
			u, _ := readUint(m)
			mx, _ := readUint(filepath.Join(d, "hugetlb."+size+".max_usage_in_bytes"))
			e.HugeTLB = append(e.HugeTLB, HugeTLBStat{PageSize: size, Usage: u, MaxUsage: mx})
		}
	}
	if e.Procs == nil {
		if d, ok := dir("pids"); ok {
			e.Procs = readProcs(filepath.Join(d, "cgroup.procs"))
		}
	}
	return e
}

func readExtraV2(dir string) *Extra {
	e := &Extra{CPUQuota: -1}
	if st, err := readKV(filepath.Join(dir, "cpu.stat")); err == nil {
		e.HasCPUStat = true
		e.CPUUserNanos, e.CPUSysNanos = st["user_usec"]*1000, st["system_usec"]*1000
		e.CFSPeriods, e.CFSThrottled, e.CFSThrottledNanos = st["nr_periods"], st["nr_throttled"], st["throttled_usec"]*1000
	}
	if data, err := os.ReadFile(filepath.Join(dir, "cpu.max")); err == nil {
		f := strings.Fields(string(data))
		if len(f) == 2 {
			e.CPUPeriod, _ = strconv.ParseUint(f[1], 10, 64)
			if q, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				e.CPUQuota = q
			}
		}
	}
	if w, err := readUint(filepath.Join(dir, "cpu.weight")); err == nil && w > 0 {
		// The inverse of the kubelet's shares → weight conversion.
		e.CPUShares = 2 + ((w-1)*262142)/9999
	}
	if st, err := readKV(filepath.Join(dir, "memory.stat")); err == nil {
		e.HasMemory = true
		e.MemoryCache, e.MemoryMapped = st["file"], st["file_mapped"]
		e.MemoryKernel = st["kernel"]
		if e.MemoryKernel == 0 {
			e.MemoryKernel = st["kernel_stack"] + st["slab"] + st["sock"] + st["pagetables"]
		}
	}
	e.MemoryMaxUsage, _ = readUint(filepath.Join(dir, "memory.peak"))
	e.MemoryLimit, _ = readMax(filepath.Join(dir, "memory.max"))
	e.MemorySoftLimit, _ = readMax(filepath.Join(dir, "memory.low"))
	if sw, err := readMax(filepath.Join(dir, "memory.swap.max")); err == nil && sw > 0 && e.MemoryLimit > 0 {
		e.MemorySwapLimit = e.MemoryLimit + sw
	}
	if st, err := readKV(filepath.Join(dir, "memory.events")); err == nil {
		e.MemFailcnt, e.OOMEvents = st["max"], st["oom_kill"]
	}
	if v, err := readUint(filepath.Join(dir, "pids.current")); err == nil {
		e.HasThreads, e.Threads = true, v
		e.ThreadsMax, _ = readMax(filepath.Join(dir, "pids.max"))
	}
	if data, err := os.ReadFile(filepath.Join(dir, "io.stat")); err == nil {
		e.Blkio = parseIOStatV2(data)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "hugetlb.*.current"))
	for _, m := range matches {
		size := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m), "hugetlb."), ".current")
		u, _ := readUint(m)
		e.HugeTLB = append(e.HugeTLB, HugeTLBStat{PageSize: size, Usage: u})
	}
	e.Procs = readProcs(filepath.Join(dir, "cgroup.procs"))
	return e
}

// parseBlkioV1 reads "MAJ:MIN Op value" lines of io_service_bytes, and the
// matching op counts from the io_serviced file next to it.
func parseBlkioV1(bytesData []byte, servicedPath string) []BlkioStat {
	type key struct {
		maj, min uint64
		op       string
	}
	ops := map[key]uint64{}
	if data, err := os.ReadFile(servicedPath); err == nil {
		for _, l := range blkioLines(data) {
			ops[key{l.Major, l.Minor, l.Op}] = l.Bytes
		}
	}
	var out []BlkioStat
	for _, l := range blkioLines(bytesData) {
		l.Ops = ops[key{l.Major, l.Minor, l.Op}]
		out = append(out, l)
	}
	return out
}

func blkioLines(data []byte) []BlkioStat {
	var out []BlkioStat
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || (f[1] != "Read" && f[1] != "Write") {
			continue
		}
		maj, min, ok := parseDev(f[0])
		v, err := strconv.ParseUint(f[2], 10, 64)
		if !ok || err != nil {
			continue
		}
		out = append(out, BlkioStat{Major: maj, Minor: min, Op: f[1], Bytes: v})
	}
	return out
}

// parseIOStatV2 reads io.stat: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N ...".
func parseIOStatV2(data []byte) []BlkioStat {
	var out []BlkioStat
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		maj, min, ok := parseDev(f[0])
		if !ok {
			continue
		}
		kv := map[string]uint64{}
		for _, p := range f[1:] {
			k, v, _ := strings.Cut(p, "=")
			kv[k], _ = strconv.ParseUint(v, 10, 64)
		}
		out = append(out,
			BlkioStat{Major: maj, Minor: min, Op: "Read", Bytes: kv["rbytes"], Ops: kv["rios"]},
			BlkioStat{Major: maj, Minor: min, Op: "Write", Bytes: kv["wbytes"], Ops: kv["wios"]})
	}
	return out
}

func parseDev(s string) (maj, min uint64, ok bool) {
	a, b, found := strings.Cut(s, ":")
	if !found {
		return 0, 0, false
	}
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	return x, y, err1 == nil && err2 == nil
}

func readInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(string(bytes.TrimSpace(data)), 10, 64)
}

// limitV1 reads a v1 limit file; v1's "unlimited" is 0 here.
func limitV1(path string) uint64 {
	v, err := readUint(path)
	if err != nil || v >= unlimitedV1 {
		return 0
	}
	return v
}

func readProcs(path string) []int {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// ProcStats are counts over a set of processes, as cadvisor's process
// stats: open file descriptors, sockets among them, and the lowest soft
// limit on open files.
type ProcStats struct {
	FDs, Sockets uint64
	MaxOpenFiles uint64 // soft limit of the first process; 0 if unknown
}

// Procs counts the file descriptors and sockets of pids under procRoot
// (normally /proc). A process that ends meanwhile is skipped.
func Procs(procRoot string, pids []int) ProcStats {
	var ps ProcStats
	for i, pid := range pids {
		dir := filepath.Join(procRoot, strconv.Itoa(pid))
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			ps.FDs++
			if t, err := os.Readlink(filepath.Join(dir, "fd", fd.Name())); err == nil && strings.HasPrefix(t, "socket:") {
				ps.Sockets++
			}
		}
		if i == 0 || ps.MaxOpenFiles == 0 {
			ps.MaxOpenFiles = softOpenFiles(filepath.Join(dir, "limits"))
		}
	}
	return ps
}

func softOpenFiles(path string) uint64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, "Max open files"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				v, _ := strconv.ParseUint(f[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

// FsInfo is the filesystem that holds a path, as cadvisor reports it.
type FsInfo struct {
	Device             string // the mount source, e.g. /dev/sda1
	Major, Minor       uint64
	Capacity           uint64 // bytes
	Inodes, InodesFree uint64
}

// Filesystem describes the filesystem holding path: statfs for its sizes,
// this process's mount table for the device name of its major:minor.
func Filesystem(path string) (FsInfo, error) {
	var fs FsInfo
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fs, err
	}
	fs.Capacity = st.Blocks * uint64(st.Bsize)
	fs.Inodes, fs.InodesFree = st.Files, st.Ffree
	var s unix.Stat_t
	if err := unix.Stat(path, &s); err != nil {
		return fs, err
	}
	fs.Major, fs.Minor = uint64(unix.Major(s.Dev)), uint64(unix.Minor(s.Dev))
	fs.Device = fmt.Sprintf("%d:%d", fs.Major, fs.Minor)
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		hit := uint64(m.Major) == fs.Major && uint64(m.Minor) == fs.Minor
		return !hit, hit
	})
	if err == nil && len(mounts) > 0 {
		fs.Device = mounts[0].Source
	}
	return fs, nil
}

// BlockDevice names a block device by its numbers (/dev/sda), from sysfs;
// "MAJ:MIN" when sysfs does not know it.
func BlockDevice(major, minor uint64) string {
	data, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/uevent", major, minor))
	if err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if name, ok := strings.CutPrefix(l, "DEVNAME="); ok {
				return "/dev/" + name
			}
		}
	}
	return fmt.Sprintf("%d:%d", major, minor)
}
