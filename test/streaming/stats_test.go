package streaming

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pod-shim/pod-shim/test/harness"
)

// statsJSON is crictl stats -o json (protobuf JSON: uint64 as strings).
type statsJSON struct {
	Stats []struct {
		Attributes struct {
			ID string `json:"id"`
		} `json:"attributes"`
		CPU struct {
			Timestamp string `json:"timestamp"`
			Usage     struct {
				Value string `json:"value"`
			} `json:"usageCoreNanoSeconds"`
		} `json:"cpu"`
		Memory struct {
			WorkingSet struct {
				Value string `json:"value"`
			} `json:"workingSetBytes"`
			Usage struct {
				Value string `json:"value"`
			} `json:"usageBytes"`
		} `json:"memory"`
		WritableLayer struct {
			Inodes struct {
				Value string `json:"value"`
			} `json:"inodesUsed"`
		} `json:"writableLayer"`
	} `json:"stats"`
}

func u64(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return v
}

func readCgroupUint(t *testing.T, file string) uint64 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return u64(t, strings.TrimSpace(string(b)))
}

func memoryStat(t *testing.T, dir, key string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k == key {
			return u64(t, v)
		}
	}
	t.Fatalf("no %s in memory.stat", key)
	return 0
}

// v1Cgroup is where a controller's file for cgroup path lives on this host;
// the test skips on pure v2 (the parsers have unit tests for v2).
func v1Cgroup(t *testing.T, controller, path string) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/cgroup", controller, path)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("cgroup v1 %s hierarchy not found at %s: %v", controller, dir, err)
	}
	return dir
}

func within(a, lo, hi uint64, pct float64) bool {
	return float64(a) >= float64(lo)*(1-pct/100) && float64(a) <= float64(hi)*(1+pct/100)
}

// TestStats: crictl stats and statsp show CPU rising for a busy loop and
// memory growing for an allocator, agreeing with the cgroup files within 5 %.
func TestStats(t *testing.T) {
	requireHost(t)
	d := startDaemon(t)
	busyPod, busy := d.podWith("busy", "while :; do :; done")
	_, alloc := d.podWith("alloc", "i=0; while [ $i -lt 8 ]; do dd if=/dev/zero of=/dev/shm/f$i bs=1M count=4 2>/dev/null; i=$((i+1)); sleep 1; done; sleep 100000")

	cpuDir := v1Cgroup(t, "cpuacct", d.bundleCgroup(busy))
	memDir := v1Cgroup(t, "memory", d.bundleCgroup(alloc))

	sample := func(id string) (cpu, ws, usage uint64) {
		var s statsJSON
		d.CrictlJSON(&s, "stats", "-o", "json", "--id", id)
		if len(s.Stats) != 1 {
			t.Fatalf("crictl stats --id %s: %d entries", id, len(s.Stats))
		}
		st := s.Stats[0]
		return u64(t, st.CPU.Usage.Value), u64(t, st.Memory.WorkingSet.Value), u64(t, st.Memory.Usage.Value)
	}

	// CPU: the reported counter lies between cgroup reads taken before and
	// after the call, and keeps rising.
	before := readCgroupUint(t, filepath.Join(cpuDir, "cpuacct.usage"))
	cpu1, _, _ := sample(busy)
	after := readCgroupUint(t, filepath.Join(cpuDir, "cpuacct.usage"))
	if !within(cpu1, before, after, 5) {
		t.Errorf("busy cpu %d not within 5%% of cgroup [%d, %d]", cpu1, before, after)
	}
	harness.Eventually(t, "busy loop CPU rising", 30*time.Second, func() error {
		if cpu2, _, _ := sample(busy); cpu2 <= cpu1 {
			return fmt.Errorf("cpu %d after %d", cpu2, cpu1)
		}
		return nil
	})
	// crictl's own CPU % for the busy loop (two samples a second apart).
	out := d.Crictl("stats", "--id", busy)
	if pct := cpuPercent(t, out, busy); pct < 20 {
		t.Errorf("crictl stats CPU %% of a busy loop = %.1f, want well above 0:\n%s", pct, out)
	}

	// Memory grows as the allocator fills /dev/shm, and agrees with the cgroup.
	_, ws1, _ := sample(alloc)
	harness.Eventually(t, "allocator memory growing", 60*time.Second, func() error {
		if _, ws, _ := sample(alloc); ws < ws1+8<<20 {
			return fmt.Errorf("working set %d, was %d", ws, ws1)
		}
		return nil
	})
	harness.Eventually(t, "allocator done", 60*time.Second, func() error {
		if _, ws, _ := sample(alloc); ws < 30<<20 {
			return fmt.Errorf("working set %d", ws)
		}
		return nil
	})
	_, ws, usage := sample(alloc)
	cgUsage := readCgroupUint(t, filepath.Join(memDir, "memory.usage_in_bytes"))
	cgWS := cgUsage - memoryStat(t, memDir, "total_inactive_file")
	if !within(usage, cgUsage, cgUsage, 5) {
		t.Errorf("memory usage %d not within 5%% of cgroup %d", usage, cgUsage)
	}
	if !within(ws, cgWS, cgWS, 5) {
		t.Errorf("working set %d not within 5%% of cgroup %d", ws, cgWS)
	}

	// Pod stats: the busy pod's CPU shows in statsp, with its network.
	var ps struct {
		Stats []struct {
			Linux struct {
				CPU struct {
					Usage struct {
						Value string `json:"value"`
					} `json:"usageCoreNanoSeconds"`
				} `json:"cpu"`
				Network struct {
					Default struct {
						Name string `json:"name"`
					} `json:"defaultInterface"`
				} `json:"network"`
				Containers []any `json:"containers"`
			} `json:"linux"`
		} `json:"stats"`
	}
	d.CrictlJSON(&ps, "statsp", "-o", "json", "--id", busyPod)
	if len(ps.Stats) != 1 {
		t.Fatalf("statsp: %d entries", len(ps.Stats))
	}
	l := ps.Stats[0].Linux
	if got := u64(t, l.CPU.Usage.Value); got < cpu1 {
		t.Errorf("pod cpu %d below its container's earlier %d", got, cpu1)
	}
	if l.Network.Default.Name != "eth0" || len(l.Containers) != 1 {
		t.Errorf("pod stats network %q, %d containers", l.Network.Default.Name, len(l.Containers))
	}
	out = d.Crictl("statsp", "--id", busyPod)
	if pct := cpuPercent(t, out, busyPod); pct < 20 {
		t.Errorf("crictl statsp CPU %% of a busy pod = %.1f:\n%s", pct, out)
	}
}

// cpuPercent finds the CPU % column of the row for id in crictl's table.
func cpuPercent(t *testing.T, table, id string) float64 {
	t.Helper()
	// crictl clears the screen first: drop everything before the header.
	if i := strings.LastIndex(table, "\x1b[H"); i >= 0 {
		table = table[i+3:]
	}
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) < 2 {
		t.Fatalf("no rows in:\n%s", table)
	}
	col := -1
	for i, h := range regexpFields(lines[0]) {
		if h == "CPU %" {
			col = i
		}
	}
	for _, l := range lines[1:] {
		f := regexpFields(l)
		isRow := false
		for _, x := range f {
			isRow = isRow || (len(x) >= 12 && strings.HasPrefix(id, x))
		}
		if col >= 0 && col < len(f) && isRow {
			v, err := strconv.ParseFloat(f[col], 64)
			if err != nil {
				t.Fatalf("CPU %% %q: %v", f[col], err)
			}
			return v
		}
	}
	t.Fatalf("no row for %s in:\n%s", id[:13], table)
	return 0
}

// regexpFields splits a crictl table row on runs of 2+ spaces (headers like
// "CPU %" hold one space).
func regexpFields(l string) []string {
	var out []string
	for _, f := range bytes.Split([]byte(l), []byte("  ")) {
		if s := strings.TrimSpace(string(f)); s != "" {
			out = append(out, s)
		}
	}
	return out
}
