// Package procmem measures what a runtime's per-pod processes cost in memory,
// for the benchmarks (podbench, and test/e2e's BenchmarkPodReady).
package procmem

import (
	"os"
	"strconv"
	"strings"
)

// PerPod sums the PSS (KiB) of the processes whose command line contains
// match, except daemons, and of their children named pause.
func PerPod(match string) (kib int64, procs int) {
	if match == "" {
		return 0, 0
	}
	entries, _ := os.ReadDir("/proc")
	type proc struct{ pid, ppid, comm string }
	var all []proc
	parents := map[string]bool{}
	for _, e := range entries {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		fields := strings.Fields(s[closing+1:])
		if len(fields) < 2 {
			continue
		}
		all = append(all, proc{pid: pid, ppid: fields[1], comm: s[open+1 : closing]})
		raw, _ := os.ReadFile("/proc/" + pid + "/cmdline")
		argv := strings.Split(string(raw), "\x00")
		cmd := strings.Join(argv, " ")
		daemon := strings.Contains(cmd, " serve") || strings.HasSuffix(argv[0], "/containerd") || argv[0] == "containerd"
		if strings.Contains(cmd, match) && !daemon {
			parents[pid] = true
		}
	}
	for _, p := range all {
		if parents[p.pid] || (parents[p.ppid] && p.comm == "pause") {
			kib += pssKiB(p.pid)
			procs++
		}
	}
	return kib, procs
}

func pssKiB(pid string) int64 {
	data, err := os.ReadFile("/proc/" + pid + "/smaps_rollup")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}
