package stats

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadV2(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"cgroup.controllers":         "cpu memory pids io\n",
		"pod/c1/cpu.stat":            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
		"pod/c1/memory.current":      "10000\n",
		"pod/c1/memory.stat":         "anon 4000\nfile 6000\ninactive_file 3000\npgfault 77\npgmajfault 3\n",
		"pod/c1/memory.max":          "max\n",
		"pod/c1/memory.swap.current": "512\n",
		"pod/c1/memory.swap.max":     "1024\n",
		"pod/c1/pids.current":        "4\n",
		"pod/c1/cpu.pressure":        "some avg10=1.50 avg60=0.20 avg300=0.00 total=2000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=10\n",
		"pod/c1/memory.pressure":     "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
	})
	h := &Hierarchy{Unified: root}
	s, err := h.Read("/pod/c1")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want uint64
	}{
		{"cpu", s.CPUUsageNanos, 1_500_000},
		{"usage", s.MemoryUsage, 10000},
		{"working set", s.MemoryWorking, 7000},
		{"rss", s.MemoryRSS, 4000},
		{"pgfault", s.PageFaults, 77},
		{"pgmajfault", s.MajorPageFaults, 3},
		{"limit", s.MemoryLimit, 0},
		{"swap", s.SwapUsage, 512},
		{"swap limit", s.SwapLimit, 1024},
		{"pids", s.Pids, 4},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if s.CPUPSI == nil || s.CPUPSI.Some.Avg10 != 1.5 || s.CPUPSI.Some.Total != 2_000_000 || s.CPUPSI.Full.Total != 10_000 {
		t.Errorf("cpu psi = %+v", s.CPUPSI)
	}
	if s.IOPSI != nil {
		t.Errorf("io psi from a missing file: %+v", s.IOPSI)
	}
	if _, err := h.Read("/pod/missing"); err == nil {
		t.Error("missing cgroup read without error")
	}
}

func TestReadV1(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"cpuacct/pod/c1/cpuacct.usage":              "123456789\n",
		"memory/pod/c1/memory.usage_in_bytes":       "20000\n",
		"memory/pod/c1/memory.limit_in_bytes":       "9223372036854771712\n",
		"memory/pod/c1/memory.memsw.usage_in_bytes": "20100\n",
		"memory/pod/c1/memory.stat":                 "rss 1\ninactive_file 1\ntotal_rss 8000\ntotal_inactive_file 5000\ntotal_pgfault 10\ntotal_pgmajfault 1\n",
		"pids/pod/c1/pids.current":                  "2\n",
	})
	h := &Hierarchy{V1: map[string]string{
		"cpuacct": filepath.Join(root, "cpuacct"),
		"memory":  filepath.Join(root, "memory"),
		"pids":    filepath.Join(root, "pids"),
	}}
	s, err := h.Read("pod/c1")
	if err != nil {
		t.Fatal(err)
	}
	if s.CPUUsageNanos != 123456789 || s.MemoryUsage != 20000 || s.MemoryWorking != 15000 || s.MemoryRSS != 8000 ||
		s.PageFaults != 10 || s.MajorPageFaults != 1 || s.Pids != 2 || s.MemoryLimit != 0 || s.SwapUsage != 100 {
		t.Errorf("sample = %+v", s)
	}
	if !h.Exists("/pod/c1") || h.Exists("/pod/c2") {
		t.Error("Exists wrong")
	}
}

func TestRate(t *testing.T) {
	c := NewCollector(&Hierarchy{})
	t0 := time.Now()
	s := c.withRate("a", &Cgroup{Time: t0, HasCPU: true, CPUUsageNanos: 1e9})
	if s.HasNanoCores {
		t.Fatal("rate from a single sample")
	}
	s = c.withRate("a", &Cgroup{Time: t0.Add(2 * time.Second), HasCPU: true, CPUUsageNanos: 2e9})
	if !s.HasNanoCores || s.NanoCores != 5e8 {
		t.Fatalf("rate = %d (%v), want half a core", s.NanoCores, s.HasNanoCores)
	}
	// A sample right after keeps the last rate instead of a noisy one.
	s = c.withRate("a", &Cgroup{Time: t0.Add(2*time.Second + time.Millisecond), HasCPU: true, CPUUsageNanos: 2e9 + 1e6})
	if s.NanoCores != 5e8 {
		t.Fatalf("rate after a tiny window = %d", s.NanoCores)
	}
	c.Retain(map[string]bool{})
	if s := c.withRate("a", &Cgroup{Time: t0.Add(5 * time.Second), HasCPU: true, CPUUsageNanos: 3e9}); s.HasNanoCores {
		t.Fatal("rate survived Retain")
	}
}

func TestParseNetDev(t *testing.T) {
	data := []byte(`Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0:    4242      10    2    0    0     0          0         0     3131      20    1    0    0     0       0          0
`)
	got := ParseNetDev(data)
	if len(got) != 1 || got[0] != (Interface{Name: "eth0", RxBytes: 4242, RxPackets: 10, RxErrors: 2, TxBytes: 3131, TxPackets: 20, TxErrors: 1}) {
		t.Fatalf("got %+v", got)
	}
}

func TestDirUsage(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a": "hello", "sub/b": string(make([]byte, 10000))})
	os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "a2"))
	u := DirUsage(dir)
	if u.Inodes != 4 { // dir, a, sub, sub/b (a2 is a's inode)
		t.Errorf("inodes = %d", u.Inodes)
	}
	if u.Bytes < 10000 {
		t.Errorf("bytes = %d", u.Bytes)
	}
	if DirUsage(filepath.Join(dir, "nope")) != (FsUsage{}) {
		t.Error("missing dir has usage")
	}
}

// TestDetectHost: the host's mode and mounts as opencontainers/cgroups sees
// them give a hierarchy that reads this process's own cgroup.
func TestDetectHost(t *testing.T) {
	h, err := Detect("/sys/fs/cgroup")
	if err != nil {
		t.Skipf("no cgroup hierarchy here: %v", err)
	}
	if (h.Unified != "") == (len(h.V1) > 0) {
		t.Fatalf("hierarchy %+v: want either unified or v1 controllers", h)
	}
	if h.Unified == "" && (h.V1["memory"] == "" || h.V1["cpuacct"] == "") {
		t.Errorf("v1 hierarchy %+v: no memory or cpuacct controller", h.V1)
	}
	own := "/"
	if h.Unified == "" {
		if p, err := cgroups.ParseCgroupFile("/proc/self/cgroup"); err == nil {
			own = p["memory"]
		}
	} else if p, err := cgroups.ParseCgroupFile("/proc/self/cgroup"); err == nil {
		own = p[""]
	}
	cg, err := h.Read(own)
	if err != nil {
		t.Fatalf("reading this process's cgroup %s: %v", own, err)
	}
	if !cg.HasMemory || cg.MemoryUsage == 0 {
		t.Errorf("this process's cgroup %s: %+v, want memory in use", own, cg)
	}
}
