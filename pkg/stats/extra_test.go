package stats

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestReadExtraV1(t *testing.T) {
	root := t.TempDir()
	h := &Hierarchy{V1: map[string]string{}}
	files := map[string]map[string]string{
		"cpuacct": {"cpuacct.usage_user": "600\n", "cpuacct.usage_sys": "400\n"},
		"cpu":     {"cpu.stat": "nr_periods 10\nnr_throttled 2\nthrottled_time 500\n", "cpu.cfs_period_us": "100000\n", "cpu.cfs_quota_us": "20000\n", "cpu.shares": "1024\n"},
		"memory": {"memory.stat": "cache 10\nmapped_file 5\ntotal_cache 20\ntotal_mapped_file 7\n", "memory.kmem.usage_in_bytes": "30\n",
			"memory.max_usage_in_bytes": "99\n", "memory.failcnt": "1\n", "memory.limit_in_bytes": "67108864\n",
			"memory.soft_limit_in_bytes": "9223372036854771712\n", "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "cgroup.procs": "1\n"},
		"pids":  {"pids.current": "4\n", "pids.max": "max\n"},
		"blkio": {"blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\nTotal 12288\n", "blkio.throttle.io_serviced_recursive": "8:0 Read 1\n8:0 Write 2\n"},
	}
	for ctrl, fs := range files {
		dir := filepath.Join(root, ctrl, "pod", "c")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		h.V1[ctrl] = filepath.Join(root, ctrl)
		for name, body := range fs {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := h.ReadExtra("/pod/c")
	want := &Extra{
		HasCPUStat: true, CPUUserNanos: 600, CPUSysNanos: 400, CFSPeriods: 10, CFSThrottled: 2, CFSThrottledNanos: 500,
		CPUPeriod: 100000, CPUShares: 1024, CPUQuota: 20000,
		HasMemory: true, MemoryCache: 20, MemoryMapped: 7, MemoryKernel: 30, MemoryMaxUsage: 99, MemFailcnt: 1, MemoryLimit: 64 << 20, OOMEvents: 3,
		HasThreads: true, Threads: 4,
		Blkio: []BlkioStat{{Major: 8, Minor: 0, Op: "Read", Bytes: 4096, Ops: 1}, {Major: 8, Minor: 0, Op: "Write", Bytes: 8192, Ops: 2}},
		Procs: []int{1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReadExtra =\n%+v\nwant\n%+v", got, want)
	}
}

func TestReadExtraV2(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"cpu.stat": "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 10\nnr_throttled 2\nthrottled_usec 5\n", "cpu.max": "20000 100000\n", "cpu.weight": "100\n",
		"memory.stat": "file 20\nfile_mapped 7\nkernel 30\n", "memory.peak": "99\n", "memory.max": "67108864\n", "memory.low": "0\n",
		"memory.swap.max": "max\n", "memory.events": "low 0\nhigh 0\nmax 1\noom 1\noom_kill 3\n", "pids.current": "4\n", "pids.max": "100\n",
		"io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n", "cgroup.procs": "1\n2\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := (&Hierarchy{Unified: filepath.Dir(dir)}).ReadExtra(filepath.Base(dir))
	want := &Extra{
		HasCPUStat: true, CPUUserNanos: 6000, CPUSysNanos: 4000, CFSPeriods: 10, CFSThrottled: 2, CFSThrottledNanos: 5000,
		CPUPeriod: 100000, CPUShares: 2 + (99*262142)/9999, CPUQuota: 20000,
		HasMemory: true, MemoryCache: 20, MemoryMapped: 7, MemoryKernel: 30, MemoryMaxUsage: 99, MemFailcnt: 1, MemoryLimit: 64 << 20, OOMEvents: 3,
		HasThreads: true, Threads: 4, ThreadsMax: 100,
		Blkio: []BlkioStat{{Major: 8, Minor: 0, Op: "Read", Bytes: 4096, Ops: 1}, {Major: 8, Minor: 0, Op: "Write", Bytes: 8192, Ops: 2}},
		Procs: []int{1, 2},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReadExtra =\n%+v\nwant\n%+v", got, want)
	}
}

func TestProcsOfSelf(t *testing.T) {
	ps := Procs("/proc", []int{os.Getpid(), 1 << 30})
	if ps.FDs == 0 || ps.MaxOpenFiles == 0 {
		t.Errorf("Procs(self) = %+v, want open fds and a soft limit", ps)
	}
}

func TestParseNetDevPackets(t *testing.T) {
	data := []byte("Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n" +
		"  eth0: 100 2 3 4 0 0 0 0 200 5 6 7 0 0 0 0\n")
	got := ParseNetDev(data)
	want := []Interface{{Name: "eth0", RxBytes: 100, RxPackets: 2, RxErrors: 3, RxDropped: 4, TxBytes: 200, TxPackets: 5, TxErrors: 6, TxDropped: 7}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseNetDev = %+v, want %+v", got, want)
	}
}
