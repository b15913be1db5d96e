package network

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// requireHost skips unless the prerequisites of these tests are present.
func requireHost(t testing.TB) {
	t.Helper()
	harness.RequireHost(t, harness.Host{
		Suite:   "network integration test",
		Bins:    []string{"runc", "ip", "curl", "gcc", "iptables-save", "jq"},
		Plugins: []string{"bridge", "host-local", "portmap"},
	})
}

// env is one pod-shim daemon with private dirs, its own bridge, subnet,
// host-local store and a bin dir for fake plugins searched before the real
// ones. No conflist is written: each test writes its plugin chain. The nat
// table's rules of the env's pods are checked and cleaned up besides the
// harness's leak checks.
type env struct {
	*harness.Daemon
	natBefore []string
}

// newEnv prepares dirs and names; the daemon is started with Start().
func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{natBefore: natRules(t)}
	e.Daemon = harness.New(t, harness.Options{
		Tag:         "net",
		Subnet16:    "10.248",
		Namespace:   "nettest",
		Labels:      map[string]string{"test": "network"},
		NetConf:     func(*harness.Daemon) []map[string]any { return nil },
		FakePlugins: true,
		Leftovers:   func(d *harness.Daemon) []string { return natLeftovers(d, e.natBefore) },
		Cleanup:     func(d *harness.Daemon) { cleanupNat(d, e.natBefore) },
	})
	return e
}

func portmapPlugin() map[string]any { return harness.PortmapPlugin(true) }

// podConfig is a plain pod on the CNI network, one PID namespace per
// container; opts adjust it.
func (e *env) podConfig(name string, opts ...func(*cri.PodSandboxConfig)) *cri.PodSandboxConfig {
	pidPerContainer := func(c *cri.PodSandboxConfig) {
		c.Linux = &cri.LinuxPodSandboxConfig{SecurityContext: &cri.LinuxSandboxSecurityContext{NamespaceOptions: &cri.NamespaceOption{Pid: cri.NamespaceMode_CONTAINER}}}
	}
	return e.PodConfig(name, append([]func(*cri.PodSandboxConfig){pidPerContainer}, opts...)...)
}

// startContainer creates and starts a busybox container in the pod.
func (e *env) startContainer(podID string, podCfg *cri.PodSandboxConfig, image string, pidMode cri.NamespaceMode, command ...string) string {
	e.T.Helper()
	cfg := harness.ContainerConfig("c"+harness.RandHex(3), image, command...)
	cfg.LogPath = "c.log"
	cfg.Linux = &cri.LinuxContainerConfig{SecurityContext: &cri.LinuxContainerSecurityContext{
		NamespaceOptions: &cri.NamespaceOption{Pid: pidMode},
	}}
	return e.StartContainer(podID, podCfg, cfg)
}

// natRules is `iptables-save -t nat` without comments and counters.
func natRules(t testing.TB) []string {
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	if err != nil {
		t.Fatalf("iptables-save -t nat: %v", err)
	}
	var rules []string
	for _, l := range strings.Split(string(out), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, ":") {
			l = strings.Fields(l)[0] // chain name without policy counters
		}
		rules = append(rules, l)
	}
	return rules
}

// sharedPortmapChains are the portmap plugin's top-level chains and jumps,
// shared by every pod and runtime on the node; portmap keeps them on DEL by
// design, so they are not a leak of any pod.
func sharedPortmapRule(l string) bool {
	for _, c := range []string{"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"} {
		if l == ":"+c || strings.HasPrefix(l, "-A "+c+" ") && !strings.Contains(l, "-j CNI-DN-") ||
			strings.HasSuffix(l, "-j "+c) {
			return true
		}
	}
	return false
}

// natLeftovers reports nat rules added since the env started that belong to
// it: they name its network, its subnet, or a chain one of its rules jumps
// to. Rules other tests on the machine add meanwhile are only logged.
func natLeftovers(e *harness.Daemon, natBefore []string) []string {
	before := map[string]bool{}
	for _, l := range natBefore {
		before[l] = true
	}
	var added []string
	for _, l := range natRules(e.T) {
		if !before[l] && !sharedPortmapRule(l) {
			added = append(added, l)
		}
	}
	ours := map[string]bool{}
	for _, l := range added {
		if strings.Contains(l, e.NetName) || strings.Contains(l, e.SubnetPrefix()) {
			f := strings.Fields(l)
			for i := range f {
				if (f[i] == "-j" || f[i] == "-A") && i+1 < len(f) && strings.HasPrefix(f[i+1], "CNI-") && !sharedPortmapRule(":"+f[i+1]) {
					ours[f[i+1]] = true
				}
			}
		}
	}
	var mine []string
	for _, l := range added {
		attributed := strings.Contains(l, e.NetName) || strings.Contains(l, e.SubnetPrefix())
		for c := range ours {
			if strings.Contains(l, c) {
				attributed = true
			}
		}
		if attributed {
			mine = append(mine, l)
		} else {
			e.T.Logf("nat rule added meanwhile, not attributable to this test: %s", l)
		}
	}
	return mine
}

// cleanupNat deletes nat rules and chains of this env that are still there
// (only after a failure), and portmap's shared chains when they were not
// there before the test and nothing else uses them.
func cleanupNat(e *harness.Daemon, natBefore []string) {
	var rules, chains []string
	for _, l := range natLeftovers(e, natBefore) {
		if strings.HasPrefix(l, "-A ") {
			rules = append(rules, l)
		} else if strings.HasPrefix(l, ":") {
			chains = append(chains, l[1:])
		}
	}
	for _, r := range rules {
		args := append([]string{"-t", "nat", "-D"}, splitRule(strings.TrimPrefix(r, "-A "))...)
		if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
			e.T.Logf("cleanup: iptables %v: %v: %s", args, err, out)
		}
	}
	for _, c := range chains {
		exec.Command("iptables", "-t", "nat", "-X", c).Run()
	}
	had := slices.Contains(natBefore, ":CNI-HOSTPORT-DNAT")
	if had {
		return
	}
	now := natRules(e.T)
	for _, l := range now {
		if strings.HasPrefix(l, "-A CNI-HOSTPORT-DNAT ") {
			return // another pod on the node uses portmap now
		}
	}
	for _, l := range now {
		if strings.HasPrefix(l, "-A ") && strings.HasSuffix(l, "-j CNI-HOSTPORT-DNAT") || strings.HasSuffix(l, "-j CNI-HOSTPORT-MASQ") {
			exec.Command("iptables", append([]string{"-t", "nat", "-D"}, splitRule(strings.TrimPrefix(l, "-A "))...)...).Run()
		}
	}
	for _, c := range []string{"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"} {
		exec.Command("iptables", "-t", "nat", "-F", c).Run()
	}
	for _, c := range []string{"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"} {
		exec.Command("iptables", "-t", "nat", "-X", c).Run()
	}
}

// splitRule splits an iptables-save rule into arguments, keeping quoted strings whole.
func splitRule(r string) []string {
	var out []string
	var cur strings.Builder
	inQuote := false
	for i := 0; i < len(r); i++ {
		c := r[i]
		switch {
		case c == '\\' && inQuote && i+1 < len(r):
			i++
			cur.WriteByte(r[i])
		case c == '"':
			inQuote = !inQuote
		case c == ' ' && !inQuote:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

func ctx(t testing.TB) context.Context { return harness.Ctx(t) }
