package network

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

// A CNI 1.1 plugin that answers STATUS with an error keeps NetworkReady
// false with its message, and NetworkReady turns true once it is ready; a
// CNI 1.0 config of Debian's plugins is never asked STATUS.
func TestCNIStatus(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	calls := filepath.Join(e.Base, "status-calls")
	marker := filepath.Join(e.Base, "not-ready")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.FakePlugin("fake11", fmt.Sprintf(`#!/bin/sh
cat >/dev/null
echo "$CNI_COMMAND" >>%q
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}' ;;
STATUS)
	if [ -e %q ]; then
		echo '{"cniVersion":"1.1.0","code":50,"msg":"fake11: overlay not programmed yet"}'
		exit 1
	fi ;;
esac
`, calls, marker))
	e.WriteNetConfVersion("1.1.0", map[string]any{"type": "fake11"})
	e.Start()

	harness.Eventually(t, "NetworkReady false with the plugin's message", 10*time.Second, func() error {
		ok, why := e.networkReady()
		if ok || !strings.HasPrefix(why, "NetworkPluginNotReady: ") || !strings.Contains(why, "overlay not programmed yet") {
			return fmt.Errorf("NetworkReady = %v %q", ok, why)
		}
		return nil
	})
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, "NetworkReady true once STATUS succeeds", 10*time.Second, func() error {
		if ok, why := e.networkReady(); !ok {
			return fmt.Errorf("NetworkReady = false %q", why)
		}
		return nil
	})

	// Back to a 1.0.0 config of the real plugins: ready, and no STATUS.
	e.WriteNetConf(e.BridgePlugin())
	harness.Eventually(t, "NetworkReady with a CNI 1.0 config", 10*time.Second, func() error {
		if ok, why := e.networkReady(); !ok {
			return fmt.Errorf("NetworkReady = false %q", why)
		}
		return nil
	})
	// Status answers from a cached STATUS only for the config set it was
	// asked for (pkg/network keys the cache by the set), and a 1.0.0 config
	// is never asked: fresh Status calls must run no plugin at all.
	os.Remove(calls)
	for range 3 {
		e.networkReady()
	}
	if b, _ := os.ReadFile(calls); len(b) != 0 {
		t.Errorf("plugin run with a 1.0.0 config: %s", b)
	}

	// Debian's 1.1.1 plugins under a 1.1.0 config: not ready, saying why,
	// and STATUS (which they would take for a malformed ADD) not sent.
	e.WriteNetConfVersion("1.1.0", e.BridgePlugin())
	harness.Eventually(t, "NetworkReady false for pre-1.1 plugins under a 1.1.0 config", 10*time.Second, func() error {
		ok, why := e.networkReady()
		if ok || !strings.Contains(why, "not the config's 1.1.0") {
			return fmt.Errorf("NetworkReady = %v %q", ok, why)
		}
		return nil
	})
}

// capturePlugin is a chained plugin that declares the given capabilities,
// records the config it is handed at ADD, and passes the result on.
func (e *env) capturePlugin(name string) (out string) {
	out = filepath.Join(e.Base, name+".stdin")
	e.FakePlugin(name, fmt.Sprintf(`#!/bin/sh
in=$(cat)
case "$CNI_COMMAND" in
ADD) printf '%%s' "$in" >%q; printf '%%s' "$in" | jq -c .prevResult ;;
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}' ;;
esac
`, out))
	return out
}

// The dns capability carries the sandbox's DNS config and the pod
// annotations go as containerd and CRI-O pass them, to plugins that declare
// them; a plugin that declares neither gets neither.
func TestCapabilityArgsDNSAndAnnotations(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	withCaps := e.capturePlugin("capdns")
	without := e.capturePlugin("capnone")
	e.WriteNetConf(e.BridgePlugin(),
		map[string]any{"type": "capdns", "capabilities": map[string]bool{"dns": true, "io.kubernetes.cri.pod-annotations": true, "ips": true, "mac": true}},
		map[string]any{"type": "capnone"})
	e.Start()

	dns := &cri.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"ns.svc.cluster.local"}, Options: []string{"ndots:5"}}
	id := e.RunPod(e.podConfig("caps", func(c *cri.PodSandboxConfig) {
		c.DnsConfig = dns
		c.Annotations = map[string]string{"example.com/team": "net"}
	}))

	var got struct {
		RuntimeConfig map[string]json.RawMessage `json:"runtimeConfig"`
	}
	b, err := os.ReadFile(withCaps)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if want := `{"servers":["10.96.0.10"],"searches":["ns.svc.cluster.local"],"options":["ndots:5"]}`; string(got.RuntimeConfig["dns"]) != want {
		t.Errorf("runtimeConfig.dns = %s, want %s", got.RuntimeConfig["dns"], want)
	}
	if a := string(got.RuntimeConfig["io.kubernetes.cri.pod-annotations"]); !strings.Contains(a, `"example.com/team":"net"`) {
		t.Errorf("runtimeConfig pod annotations = %s", a)
	}
	// CRI has no static IP or MAC for a pod, and neither containerd nor
	// CRI-O makes one up: declared or not, they stay unset.
	for _, k := range []string{"ips", "mac"} {
		if v, ok := got.RuntimeConfig[k]; ok {
			t.Errorf("runtimeConfig.%s = %s, want unset", k, v)
		}
	}
	b, err = os.ReadFile(without)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "runtimeConfig") {
		t.Errorf("a plugin without capabilities got runtimeConfig: %s", b)
	}

	if err := e.RemovePod(id); err != nil {
		t.Fatal(err)
	}
	e.noPods()
	e.NoLeftovers()
}

// randomULA returns an fd00::/8 /64 with random bits, for a private IPv6 range.
func randomULA() string {
	h := harness.RandHex(6)
	return fmt.Sprintf("fd%s:%s:%s::/64", h[:2], h[2:6], h[6:10])
}

// Two host-local ranges give a dual-stack pod: IPv4 first as the pod IP,
// IPv6 as the additional one, both on eth0, both released at removal.
func TestDualStack(t *testing.T) {
	requireHost(t)
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		t.Skipf("IPv6 is disabled on this kernel: %v", err)
	}
	e := newEnv(t)
	v6 := randomULA()
	br := e.BridgePlugin()
	ipam := br["ipam"].(map[string]any)
	ipam["ranges"] = [][]map[string]string{{{"subnet": e.Subnet.String()}}, {{"subnet": v6}}}
	ipam["routes"] = []map[string]string{{"dst": "0.0.0.0/0"}, {"dst": "::/0"}}
	e.WriteNetConf(br)
	e.Start()

	id := e.RunPod(e.podConfig("dual"))
	st := e.PodStatus(id).GetStatus()
	ip4 := net.ParseIP(st.GetNetwork().GetIp())
	if ip4 == nil || ip4.To4() == nil || !e.Subnet.Contains(ip4) {
		t.Errorf("network.ip = %q, want an IPv4 address in %s", st.GetNetwork().GetIp(), e.Subnet)
	}
	_, v6net, _ := net.ParseCIDR(v6)
	var extra []string
	for _, a := range st.GetNetwork().GetAdditionalIps() {
		extra = append(extra, a.GetIp())
	}
	if len(extra) != 1 || net.ParseIP(extra[0]) == nil || net.ParseIP(extra[0]).To4() != nil || !v6net.Contains(net.ParseIP(extra[0])) {
		t.Fatalf("additional_ips = %v, want one IPv6 address in %s", extra, v6)
	}
	out, err := exec.Command("nsenter", "--net="+filepath.Join(e.State, "netns", id), "ip", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), " "+ip4.String()+"/") || !strings.Contains(string(out), " "+extra[0]+"/64") {
		t.Errorf("eth0 in the pod lacks %s or %s: %v\n%s", ip4, extra[0], err, out)
	}
	if got := e.IPAMAllocations(); len(got) != 2 {
		t.Errorf("host-local holds %v, want the pod's two addresses", got)
	}

	if err := e.RemovePod(id); err != nil {
		t.Fatal(err)
	}
	e.noPods()
	e.NoLeftovers()
}

// ifbLinks lists the host's ifb devices (the bandwidth plugin's egress shapers).
func ifbLinks(t testing.TB) []string {
	out, err := exec.Command("ip", "-o", "link", "show", "type", "ifb").Output()
	if err != nil {
		t.Fatalf("ip link show type ifb: %v", err)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) >= 2 {
			names = append(names, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	return names
}

func qdiscs(dev string) string {
	out, _ := exec.Command("tc", "qdisc", "show", "dev", dev).CombinedOutput()
	return string(out)
}

// The real bandwidth plugin shapes the pod from its annotations: a token
// bucket on the host veth for ingress, an ifb device for egress; removing
// the pod takes both away.
func TestBandwidthPlugin(t *testing.T) {
	requireHost(t)
	if _, err := os.Stat(filepath.Join(harness.CNIBinDir, "bandwidth")); err != nil {
		t.Skipf("needs the bandwidth CNI plugin: %v", err)
	}
	if _, err := exec.LookPath("tc"); err != nil {
		t.Skipf("needs tc (iproute2): %v", err)
	}
	e := newEnv(t)
	ifbBefore := ifbLinks(t)
	t.Cleanup(func() {
		for _, l := range ifbLinks(t) {
			if !slices.Contains(ifbBefore, l) {
				t.Logf("cleanup: ip link del %s", l)
				exec.Command("ip", "link", "del", l).Run()
			}
		}
	})
	e.WriteNetConf(e.BridgePlugin(), map[string]any{"type": "bandwidth", "capabilities": map[string]bool{"bandwidth": true}})
	e.Start()

	id := e.RunPod(e.podConfig("shaped", func(c *cri.PodSandboxConfig) {
		c.Annotations = map[string]string{"kubernetes.io/ingress-bandwidth": "1M", "kubernetes.io/egress-bandwidth": "2M"}
	}))
	veths := e.VethsOnBridge()
	if len(veths) != 1 {
		t.Fatalf("veths on %s: %v, want the pod's one", e.Bridge, veths)
	}
	if q := qdiscs(veths[0]); !strings.Contains(q, "qdisc tbf") || !strings.Contains(q, "rate 1Mbit") {
		t.Errorf("host veth %s: no 1Mbit tbf for the pod's ingress:\n%s", veths[0], q)
	}
	var ifbs []string
	for _, l := range ifbLinks(t) {
		if !slices.Contains(ifbBefore, l) {
			ifbs = append(ifbs, l)
		}
	}
	if len(ifbs) != 1 {
		t.Fatalf("new ifb devices %v, want one for the pod's egress", ifbs)
	}
	if q := qdiscs(ifbs[0]); !strings.Contains(q, "qdisc tbf") || !strings.Contains(q, "rate 2Mbit") {
		t.Errorf("ifb %s: no 2Mbit tbf for the pod's egress:\n%s", ifbs[0], q)
	}

	// An unshaped pod on the same network gets no qdisc of the plugin.
	plain := e.RunPod(e.podConfig("plain"))
	for _, v := range e.VethsOnBridge() {
		if v != veths[0] && strings.Contains(qdiscs(v), "tbf") {
			t.Errorf("unshaped pod's veth %s has a tbf:\n%s", v, qdiscs(v))
		}
	}
	if err := e.RemovePod(plain); err != nil {
		t.Fatal(err)
	}

	if err := e.RemovePod(id); err != nil {
		t.Fatal(err)
	}
	if exec.Command("ip", "link", "show", veths[0]).Run() == nil {
		t.Errorf("host veth %s left", veths[0])
	}
	if exec.Command("ip", "link", "show", ifbs[0]).Run() == nil {
		t.Errorf("ifb %s left after removal", ifbs[0])
	}
	e.noPods()
	e.NoLeftovers()
}

// cgroupDirs lists where path exists across the v1 hierarchies (or v2).
func cgroupDirs(path string) []string {
	var out []string
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	roots := []string{"/sys/fs/cgroup"}
	for _, h := range ents {
		if h.IsDir() {
			roots = append(roots, filepath.Join("/sys/fs/cgroup", h.Name()))
		}
	}
	for _, r := range roots {
		if fi, err := os.Stat(filepath.Join(r, path)); err == nil && fi.IsDir() {
			out = append(out, filepath.Join(r, path))
		}
	}
	return out
}

// RemovePodSandbox removes the cgroup_parent its Run created, in every
// hierarchy, but leaves one that existed before (as the kubelet's does).
func TestPodCgroupRemoved(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.WriteNetConf(e.BridgePlugin())
	e.Start()

	top := "/" + e.Bridge + "-cg"
	t.Cleanup(func() { removeCgroup(t, top+"/own"); removeCgroup(t, top+"/kubelet") })
	own := top + "/own/pod" + harness.RandHex(4)
	kubelet := top + "/kubelet/pod" + harness.RandHex(4)
	// The kubelet makes its pod cgroup before RunPodSandbox.
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	for _, h := range ents {
		if h.IsDir() {
			if err := os.MkdirAll(filepath.Join("/sys/fs/cgroup", h.Name(), kubelet), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	kubeletDirs := cgroupDirs(kubelet)

	res := &cri.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 256}
	ownID := e.RunPod(e.podConfig("own", func(c *cri.PodSandboxConfig) { c.Linux.CgroupParent = own; c.Linux.Resources = res }))
	kubeID := e.RunPod(e.podConfig("kube", func(c *cri.PodSandboxConfig) { c.Linux.CgroupParent = kubelet; c.Linux.Resources = res }))
	ownDirs := cgroupDirs(own)
	if !slices.ContainsFunc(ownDirs, func(d string) bool { return strings.HasPrefix(d, "/sys/fs/cgroup/memory/") }) {
		t.Fatalf("pod cgroup %s not made in the memory hierarchy: %v", own, ownDirs)
	}

	for _, id := range []string{ownID, kubeID} {
		if err := e.StopPod(id); err != nil {
			t.Fatal(err)
		}
		if err := e.RemovePod(id); err != nil {
			t.Fatal(err)
		}
	}
	if left := cgroupDirs(own); len(left) != 0 {
		t.Errorf("pod cgroup made by the pod's Run left after removal: %v", left)
	}
	if left := cgroupDirs(top + "/own"); len(left) != 0 {
		t.Errorf("intermediate cgroup made by the pod's Run left after removal: %v", left)
	}
	if now := cgroupDirs(kubelet); !slices.Equal(now, kubeletDirs) {
		t.Errorf("a cgroup parent that existed before the pod was touched: before %v, after %v", kubeletDirs, now)
	}
	e.noPods()
	e.NoLeftovers()
}
