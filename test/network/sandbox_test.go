package network

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

// TestSandboxDetails covers the rest of issue 4's Build list through CRI:
// verbose status info, cgroup_parent and pod resources, sysctls applied and
// validated, DNS/hosts/hostname files, and host-network pods.
func TestSandboxDetails(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.WriteNetConf(e.BridgePlugin())
	e.Start()

	parent := "/" + e.Bridge + "/pod" + harness.RandHex(4)
	t.Cleanup(func() { removeCgroup(t, parent) })
	cfg := e.podConfig("details.example.com", func(c *cri.PodSandboxConfig) {
		c.Hostname = "details.example.com"
		c.DnsConfig = &cri.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"ns.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5"}}
		c.Linux.CgroupParent = parent
		c.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "80", "kernel.shmmni": "2048"}
		c.Linux.Resources = &cri.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 512, CpuPeriod: 100000, CpuQuota: 50000}
		c.Linux.Overhead = &cri.LinuxContainerResources{MemoryLimitInBytes: 8 << 20, CpuShares: 10}
	})
	id := e.RunPod(cfg)
	st := e.PodStatus(id)

	t.Run("verbose info", func(t *testing.T) {
		var info struct {
			Pid       int             `json:"pid"`
			NetNS     string          `json:"netNamespacePath"`
			CNIResult json.RawMessage `json:"cniResult"`
		}
		if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil {
			t.Fatalf("info %q: %v", st.Info["info"], err)
		}
		if info.NetNS != filepath.Join(e.State, "netns", id) {
			t.Errorf("netNamespacePath %q", info.NetNS)
		}
		if info.Pid <= 0 || strconv.Itoa(info.Pid) != st.Info["pid"] {
			t.Errorf("pid %d / %q", info.Pid, st.Info["pid"])
		}
		var pauseNS, pinned os.FileInfo
		pauseNS, _ = os.Stat(fmt.Sprintf("/proc/%d/ns/net", info.Pid))
		pinned, _ = os.Stat(info.NetNS)
		if pauseNS == nil || pinned == nil || !os.SameFile(pauseNS, pinned) {
			t.Errorf("pause %d is not in the pinned netns %s", info.Pid, info.NetNS)
		}
		if !strings.Contains(string(info.CNIResult), st.Status.Network.Ip) {
			t.Errorf("cniResult %s lacks the pod IP %s", info.CNIResult, st.Status.Network.Ip)
		}
	})

	t.Run("cgroup parent and pod resources", func(t *testing.T) {
		pid := st.Info["pid"]
		cg, _ := os.ReadFile("/proc/" + pid + "/cgroup")
		if !strings.Contains(string(cg), ":memory:"+parent+"/") {
			t.Errorf("pause cgroups do not sit under %s:\n%s", parent, cg)
		}
		for file, want := range map[string]string{
			"memory/" + parent + "/memory.limit_in_bytes": strconv.Itoa(72 << 20),
			"cpu/" + parent + "/cpu.shares":               "522",
			"cpu/" + parent + "/cpu.cfs_quota_us":         "50000",
		} {
			b, err := os.ReadFile("/sys/fs/cgroup/" + file)
			if err != nil {
				t.Skipf("cgroup v1 file: %v", err)
			}
			if got := strings.TrimSpace(string(b)); got != want {
				t.Errorf("%s = %s, want %s", file, got, want)
			}
		}
	})

	t.Run("sysctls", func(t *testing.T) {
		out, err := exec.Command("nsenter", "--net="+filepath.Join(e.State, "netns", id), "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "80" {
			t.Errorf("net.ipv4.ip_unprivileged_port_start in the pod: %q %v", out, err)
		}
		out, err = exec.Command("nsenter", "--ipc=/proc/"+st.Info["pid"]+"/ns/ipc", "cat", "/proc/sys/kernel/shmmni").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "2048" {
			t.Errorf("kernel.shmmni in the pod: %q %v", out, err)
		}
		for _, bad := range []struct {
			name string
			mod  func(*cri.PodSandboxConfig)
		}{
			{"not namespaced", func(c *cri.PodSandboxConfig) { c.Linux.Sysctls = map[string]string{"vm.swappiness": "10"} }},
			{"net with host network", func(c *cri.PodSandboxConfig) {
				c.Linux.SecurityContext.NamespaceOptions.Network = cri.NamespaceMode_NODE
				c.Linux.Sysctls = map[string]string{"net.core.somaxconn": "1024"}
			}},
			{"ipc with host ipc", func(c *cri.PodSandboxConfig) {
				c.Linux.SecurityContext.NamespaceOptions.Ipc = cri.NamespaceMode_NODE
				c.Linux.Sysctls = map[string]string{"kernel.shmmax": "1000000"}
			}},
		} {
			_, err := e.RS.RunPodSandbox(ctx(t), &cri.RunPodSandboxRequest{Config: e.podConfig("bad", bad.mod)})
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("%s: RunPodSandbox = %v, want InvalidArgument", bad.name, err)
			}
		}
	})

	t.Run("dns hosts hostname", func(t *testing.T) {
		dir := filepath.Join(e.State, "pods", id)
		resolv, _ := os.ReadFile(filepath.Join(dir, "resolv.conf"))
		want := "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
		if string(resolv) != want {
			t.Errorf("resolv.conf = %q, want %q", resolv, want)
		}
		hosts, _ := os.ReadFile(filepath.Join(dir, "hosts"))
		if !strings.Contains(string(hosts), st.Status.Network.Ip+"\tdetails.example.com\tdetails\n") {
			t.Errorf("hosts lacks the pod IP with FQDN and short name:\n%s", hosts)
		}
		hn, _ := os.ReadFile(filepath.Join(dir, "hostname"))
		if string(hn) != "details.example.com\n" {
			t.Errorf("hostname file %q", hn)
		}
	})

	t.Run("host network", func(t *testing.T) {
		before := e.IPAMAllocations()
		hid := e.RunPod(e.podConfig("hostnet", func(c *cri.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.Network = cri.NamespaceMode_NODE
		}))
		hst := e.PodStatus(hid)
		if m := hst.Status.GetLinux().GetNamespaces().GetOptions().GetNetwork(); m != cri.NamespaceMode_NODE {
			t.Errorf("network mode %v, want NODE", m)
		}
		if ip := hst.Status.GetNetwork().GetIp(); ip != "" {
			t.Errorf("host-network pod has pod IP %q", ip)
		}
		if _, err := os.Stat(filepath.Join(e.State, "netns", hid)); err == nil {
			t.Error("host-network pod has a pinned netns")
		}
		if a := e.IPAMAllocations(); len(a) != len(before) {
			t.Errorf("host-network pod allocated an IP: %v", a)
		}
		pauseNS, _ := os.Readlink("/proc/" + hst.Info["pid"] + "/ns/net")
		hostNS, _ := os.Readlink("/proc/self/ns/net")
		if pauseNS != hostNS {
			t.Errorf("host-network pause in %s, host in %s", pauseNS, hostNS)
		}
		host, _ := os.Hostname()
		if hn, _ := os.ReadFile(filepath.Join(e.State, "pods", hid, "hostname")); string(hn) != host+"\n" {
			t.Errorf("host-network pod hostname %q, want the node's %q", hn, host)
		}
		if err := e.RemovePod(hid); err != nil {
			t.Error(err)
		}
	})

	if err := e.RemovePod(id); err != nil {
		t.Fatal(err)
	}
	e.noPods()
	e.NoLeftovers()
}

// removeCgroup removes a cgroup path (deepest first) from every v1 hierarchy and v2.
func removeCgroup(t testing.TB, path string) {
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	for _, h := range append([]os.DirEntry{nil}, ents...) {
		root := "/sys/fs/cgroup"
		if h != nil {
			root = filepath.Join(root, h.Name())
		}
		dir := filepath.Join(root, path)
		var dirs []string
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil {
				t.Logf("cleanup: rmdir %s: %v", dirs[i], err)
			}
		}
		// The test's top-level dir (the bridge name) too.
		os.Remove(filepath.Dir(dir))
	}
}
