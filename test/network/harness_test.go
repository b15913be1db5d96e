package network

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/images"
)

// cniBinDir is where Debian's containernetworking-plugins puts the plugins.
const cniBinDir = "/usr/lib/cni"

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error

	registryOnce sync.Once
	testRegistry *images.Registry
	busyboxRef   string
	registryErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if testRegistry != nil {
		testRegistry.Close()
	}
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// requireHost skips unless the prerequisites of these tests are present.
func requireHost(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("network integration test: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("network integration test: needs root (runc, network namespaces, CNI bridge, iptables)")
	}
	for _, bin := range []string{"runc", "ip", "curl", "gcc", "iptables-save", "jq"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("network integration test: needs %s in PATH (see .ci/run): %v", bin, err)
		}
	}
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, p)); err != nil {
			t.Skipf("network integration test: needs the %s CNI plugin (apt-get install containernetworking-plugins): %v", p, err)
		}
	}
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// daemonBinary builds pod-shim and its pause with hack/build.sh, once per run.
func daemonBinary(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("POD_SHIM_BIN_DIR"); dir != "" {
		// Prebuilt pod-shim and pod-shim-pause, e.g. from a CI step.
		return filepath.Join(dir, "pod-shim")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pod-shim-net-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildDir = dir
		cmd := exec.Command("bash", "hack/build.sh")
		cmd.Dir = repoRoot()
		cmd.Env = append(os.Environ(), "OUT="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("hack/build.sh: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "pod-shim")
}

// busybox returns the reference of the test busybox image on the loopback registry.
func busybox(t testing.TB) string {
	t.Helper()
	registryOnce.Do(func() {
		testRegistry, busyboxRef, registryErr = images.ServeBusybox()
	})
	if registryErr != nil {
		t.Fatal(registryErr)
	}
	return busyboxRef
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// env is one pod-shim daemon with private dirs, its own bridge, subnet,
// host-local store and a bin dir for fake plugins searched before the real ones.
type env struct {
	t       testing.TB
	bin     string
	base    string
	root    string
	state   string
	sock    string
	cniConf string
	fakeBin string
	ipamDir string
	logFile string
	config  string // TOML config file passed with --config

	bridge  string
	netName string
	subnet  *net.IPNet

	cmd    *exec.Cmd
	exited chan struct{}
	conn   *grpc.ClientConn
	rs     cri.RuntimeServiceClient
	is     cri.ImageServiceClient

	natBefore []string
}

// newEnv prepares dirs and names; the daemon is started with start().
func newEnv(t testing.TB) *env {
	t.Helper()
	bin := daemonBinary(t)
	// Short base path: monitor sockets live under the state dir (108-byte limit).
	base, err := os.MkdirTemp("/tmp", "psn")
	if err != nil {
		t.Fatal(err)
	}
	suffix := randHex(3)
	e := &env{
		t:       t,
		bin:     bin,
		base:    base,
		root:    filepath.Join(base, "r"),
		state:   filepath.Join(base, "s"),
		sock:    filepath.Join(base, "cri.sock"),
		cniConf: filepath.Join(base, "cni"),
		fakeBin: filepath.Join(base, "bin"),
		ipamDir: filepath.Join(base, "ipam"),
		logFile: filepath.Join(base, "daemon.log"),
		config:  filepath.Join(base, "config.toml"),
		bridge:  "psn" + suffix,
		netName: "psnet-" + suffix,
	}
	e.natBefore = natRules(t)
	t.Cleanup(e.cleanup)
	for _, d := range []string{e.cniConf, e.fakeBin, e.ipamDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.subnet = freeSubnet(t)
	e.setConfig("")
	return e
}

// setConfig writes the daemon's TOML config (read at the next start).
func (e *env) setConfig(toml string) {
	e.t.Helper()
	if err := os.WriteFile(e.config, []byte(toml), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// freeSubnet picks 10.248.X.0/24 with X random and not routed on this host.
func freeSubnet(t testing.TB) *net.IPNet {
	t.Helper()
	out, _ := exec.Command("ip", "-4", "route", "show").Output()
	for range 50 {
		n, err := rand.Int(rand.Reader, big.NewInt(254))
		if err != nil {
			t.Fatal(err)
		}
		prefix := fmt.Sprintf("10.248.%d.", n.Int64()+1)
		if bytes.Contains(out, []byte(prefix)) {
			continue
		}
		_, subnet, _ := net.ParseCIDR(prefix + "0/24")
		return subnet
	}
	t.Fatal("no free 10.248.X.0/24 subnet")
	return nil
}

func (e *env) subnetPrefix() string {
	return strings.TrimSuffix(e.subnet.IP.String(), "0")
}

// bridgePlugin is the real bridge + host-local plugin config of the env.
func (e *env) bridgePlugin() map[string]any {
	return map[string]any{
		"type":        "bridge",
		"bridge":      e.bridge,
		"isGateway":   true,
		"ipMasq":      false,
		"hairpinMode": true,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  [][]map[string]string{{{"subnet": e.subnet.String()}}},
			"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
			"dataDir": e.ipamDir,
		},
	}
}

func portmapPlugin() map[string]any {
	return map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true}
}

// writeNetConf writes a conflist with the given plugin chain into the conf dir.
func (e *env) writeNetConf(plugins ...map[string]any) {
	e.t.Helper()
	conf := map[string]any{"cniVersion": "1.0.0", "name": e.netName, "plugins": plugins}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		e.t.Fatal(err)
	}
	file := filepath.Join(e.cniConf, "10-"+e.netName+".conflist")
	if err := os.WriteFile(file+".tmp", b, 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(file+".tmp", file); err != nil {
		e.t.Fatal(err)
	}
}

// fakePlugin writes an executable plugin script into the fake bin dir.
func (e *env) fakePlugin(name, script string) {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.fakeBin, name), []byte(script), 0o755); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) args() []string {
	return []string{"serve",
		"--config", e.config,
		"--listen", e.sock,
		"--root", e.root,
		"--state", e.state,
		"--cni-conf-dir", e.cniConf,
		"--cni-bin-dir", e.fakeBin + ":" + cniBinDir,
		"--pause-binary", filepath.Join(filepath.Dir(e.bin), "pod-shim-pause"),
		"--runtime", mustLookPath(e.t, "runc"),
		"--log-level", "debug",
	}
}

func mustLookPath(t testing.TB, bin string) string {
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// start runs the daemon and waits until it answers Version.
func (e *env) start() {
	t := e.t
	t.Helper()
	logf, err := os.OpenFile(e.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(logf, "==== %s pod-shim %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(e.args(), " "))
	cmd := exec.Command(e.bin, e.args()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	logf.Close()
	e.cmd = cmd
	exited := make(chan struct{})
	e.exited = exited
	go func() { cmd.Wait(); close(exited) }()

	if e.conn == nil {
		conn, err := grpc.NewClient("unix://"+e.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		e.conn = conn
		e.rs = cri.NewRuntimeServiceClient(conn)
		e.is = cri.NewImageServiceClient(conn)
	}
	// The bound only stops a broken daemon from hanging the suite.
	deadline := time.Now().Add(60 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("pod-shim serve exited during start-up (%v); log:\n%s", cmd.ProcessState, e.logTail())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, lastErr = e.rs.Version(ctx, &cri.VersionRequest{})
		cancel()
		if lastErr == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("pod-shim serve did not answer Version within 60s: %v; log:\n%s", lastErr, e.logTail())
}

// stop sends SIGTERM and waits for the daemon to exit (SIGKILL after 30s).
func (e *env) stop() {
	if e.cmd == nil {
		return
	}
	defer func() { e.cmd = nil }()
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(30 * time.Second):
		e.cmd.Process.Kill()
		<-e.exited
		e.t.Errorf("pod-shim serve did not exit within 30s of SIGTERM; killed")
	}
}

func (e *env) logTail() string {
	b, _ := os.ReadFile(e.logFile)
	const max = 12000
	if len(b) > max {
		b = append([]byte("...\n"), b[len(b)-max:]...)
	}
	return string(b)
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// podConfig is a plain pod on the CNI network; opts adjust it.
func (e *env) podConfig(name string, opts ...func(*cri.PodSandboxConfig)) *cri.PodSandboxConfig {
	c := &cri.PodSandboxConfig{
		Metadata:     &cri.PodSandboxMetadata{Name: name, Namespace: "nettest", Uid: randHex(16)},
		Hostname:     name,
		LogDirectory: filepath.Join(e.base, "logs", name),
		Labels:       map[string]string{"test": "network"},
		Linux:        &cri.LinuxPodSandboxConfig{SecurityContext: &cri.LinuxSandboxSecurityContext{NamespaceOptions: &cri.NamespaceOption{Pid: cri.NamespaceMode_CONTAINER}}},
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

func (e *env) runPod(cfg *cri.PodSandboxConfig) string {
	e.t.Helper()
	r, err := e.rs.RunPodSandbox(ctx(e.t), &cri.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		e.t.Fatalf("RunPodSandbox %s: %v", cfg.Metadata.Name, err)
	}
	return r.PodSandboxId
}

func (e *env) podStatus(id string) *cri.PodSandboxStatusResponse {
	e.t.Helper()
	r, err := e.rs.PodSandboxStatus(ctx(e.t), &cri.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		e.t.Fatalf("PodSandboxStatus %s: %v", id, err)
	}
	return r
}

func (e *env) stopPod(id string) error {
	_, err := e.rs.StopPodSandbox(ctx(e.t), &cri.StopPodSandboxRequest{PodSandboxId: id})
	return err
}

func (e *env) removePod(id string) error {
	_, err := e.rs.RemovePodSandbox(ctx(e.t), &cri.RemovePodSandboxRequest{PodSandboxId: id})
	return err
}

// pull pulls the busybox test image into the daemon.
func (e *env) pull() string {
	e.t.Helper()
	ref := busybox(e.t)
	if _, err := e.is.PullImage(ctx(e.t), &cri.PullImageRequest{Image: &cri.ImageSpec{Image: ref}}); err != nil {
		e.t.Fatalf("PullImage %s: %v", ref, err)
	}
	return ref
}

// startContainer creates and starts a busybox container in the pod.
func (e *env) startContainer(podID string, podCfg *cri.PodSandboxConfig, image string, pidMode cri.NamespaceMode, command ...string) string {
	e.t.Helper()
	r, err := e.rs.CreateContainer(ctx(e.t), &cri.CreateContainerRequest{
		PodSandboxId: podID,
		Config: &cri.ContainerConfig{
			Metadata: &cri.ContainerMetadata{Name: "c" + randHex(3)},
			Image:    &cri.ImageSpec{Image: image},
			Command:  command,
			LogPath:  "c.log",
			Linux: &cri.LinuxContainerConfig{SecurityContext: &cri.LinuxContainerSecurityContext{
				NamespaceOptions: &cri.NamespaceOption{Pid: pidMode},
			}},
		},
		SandboxConfig: podCfg,
	})
	if err != nil {
		e.t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := e.rs.StartContainer(ctx(e.t), &cri.StartContainerRequest{ContainerId: r.ContainerId}); err != nil {
		e.t.Fatalf("StartContainer: %v", err)
	}
	return r.ContainerId
}

// netnsFiles lists the pinned netns files in the daemon's state dir.
func (e *env) netnsFiles() []string {
	ents, _ := os.ReadDir(filepath.Join(e.state, "netns"))
	var out []string
	for _, d := range ents {
		out = append(out, d.Name())
	}
	return out
}

// vethsOnBridge lists interfaces enslaved to the env's bridge.
func (e *env) vethsOnBridge() []string {
	out, err := exec.Command("ip", "-o", "link", "show", "master", e.bridge).Output()
	if err != nil {
		return nil
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			names = append(names, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	return names
}

// ipamAllocations lists host-local allocation files (named by IP).
func (e *env) ipamAllocations() []string {
	ents, _ := os.ReadDir(filepath.Join(e.ipamDir, e.netName))
	var out []string
	for _, d := range ents {
		if net.ParseIP(d.Name()) != nil {
			out = append(out, d.Name())
		}
	}
	return out
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
func (e *env) natLeftovers() []string {
	before := map[string]bool{}
	for _, l := range e.natBefore {
		before[l] = true
	}
	var added []string
	for _, l := range natRules(e.t) {
		if !before[l] && !sharedPortmapRule(l) {
			added = append(added, l)
		}
	}
	ours := map[string]bool{}
	for _, l := range added {
		if strings.Contains(l, e.netName) || strings.Contains(l, e.subnetPrefix()) {
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
		attributed := strings.Contains(l, e.netName) || strings.Contains(l, e.subnetPrefix())
		for c := range ours {
			if strings.Contains(l, c) {
				attributed = true
			}
		}
		if attributed {
			mine = append(mine, l)
		} else {
			e.t.Logf("nat rule added meanwhile, not attributable to this test: %s", l)
		}
	}
	return mine
}

// leftovers reports what of the env's pods is still on the host.
func (e *env) leftovers() []string {
	var problems []string
	if f := e.netnsFiles(); len(f) > 0 {
		problems = append(problems, fmt.Sprintf("netns files left: %v", f))
	}
	if v := e.vethsOnBridge(); len(v) > 0 {
		problems = append(problems, fmt.Sprintf("veths left on %s: %v", e.bridge, v))
	}
	if a := e.ipamAllocations(); len(a) > 0 {
		problems = append(problems, fmt.Sprintf("host-local allocations left: %v", a))
	}
	if n := e.natLeftovers(); len(n) > 0 {
		problems = append(problems, fmt.Sprintf("nat rules left: %v", n))
	}
	if m := mountsUnder(e.base); len(m) > 0 {
		problems = append(problems, fmt.Sprintf("mounts left: %v", m))
	}
	return problems
}

// noLeftovers fails the test if anything of its pods is left; veths go
// away with their netns asynchronously, so it waits a little for those.
func (e *env) noLeftovers() {
	e.t.Helper()
	var problems []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		problems = e.leftovers()
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, p := range problems {
		e.t.Error(p)
	}
}

func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// cleanup removes everything the env made, whether or not the daemon works.
func (e *env) cleanup() {
	t := e.t
	if t.Failed() {
		t.Logf("pod-shim daemon log (%s):\n%s", e.logFile, e.logTail())
	}
	if e.cmd != nil && e.rs != nil {
		c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if resp, err := e.rs.ListPodSandbox(c, &cri.ListPodSandboxRequest{}); err == nil {
			for _, p := range resp.Items {
				e.rs.StopPodSandbox(c, &cri.StopPodSandboxRequest{PodSandboxId: p.Id})
				if _, err := e.rs.RemovePodSandbox(c, &cri.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
					t.Logf("cleanup: RemovePodSandbox %s: %v", p.Id, err)
				}
			}
		}
		cancel()
	}
	e.stop()
	if e.conn != nil {
		e.conn.Close()
	}
	// By hand, whatever the daemon left.
	runcRoot := filepath.Join(e.state, "runc")
	if out, err := exec.Command("runc", "--root", runcRoot, "list", "-q").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			exec.Command("runc", "--root", runcRoot, "delete", "-f", id).Run()
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		var pid int
		if _, err := fmt.Sscanf(d.Name(), "%d", &pid); err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if bytes.Contains(cmdline, []byte(e.base)) && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, m := range mountsUnder(e.base) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Logf("cleanup: unmount %s: %v", m, err)
		}
	}
	for _, v := range e.vethsOnBridge() {
		exec.Command("ip", "link", "del", v).Run()
	}
	if exec.Command("ip", "link", "show", e.bridge).Run() == nil {
		if out, err := exec.Command("ip", "link", "del", e.bridge).CombinedOutput(); err != nil {
			t.Errorf("cleanup: ip link del %s: %v: %s", e.bridge, err, out)
		}
	}
	e.cleanupNat()
	if m := mountsUnder(e.base); len(m) > 0 {
		t.Errorf("cleanup: mounts still under %s, leaving it: %v", e.base, m)
		return
	}
	if err := os.RemoveAll(e.base); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// cleanupNat deletes nat rules and chains of this env that are still there
// (only after a failure), and portmap's shared chains when they were not
// there before the test and nothing else uses them.
func (e *env) cleanupNat() {
	var rules, chains []string
	for _, l := range e.natLeftovers() {
		if strings.HasPrefix(l, "-A ") {
			rules = append(rules, l)
		} else if strings.HasPrefix(l, ":") {
			chains = append(chains, l[1:])
		}
	}
	for _, r := range rules {
		args := append([]string{"-t", "nat", "-D"}, splitRule(strings.TrimPrefix(r, "-A "))...)
		if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
			e.t.Logf("cleanup: iptables %v: %v: %s", args, err, out)
		}
	}
	for _, c := range chains {
		exec.Command("iptables", "-t", "nat", "-X", c).Run()
	}
	had := slices.Contains(e.natBefore, ":CNI-HOSTPORT-DNAT")
	if had {
		return
	}
	now := natRules(e.t)
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

// eventually polls f until it returns nil; the bound only stops a hang.
func eventually(t testing.TB, what string, bound time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, bound, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var errNotYet = errors.New("not yet")

func parseIP(s string) net.IP { return net.ParseIP(s) }
