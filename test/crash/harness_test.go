package crash

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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/images"
)

// cniBinDir is where Debian's containernetworking-plugins puts the plugins.
const cniBinDir = "/usr/lib/cni"

// failpointExit is pkg/failpoint's exit status.
const failpointExit = 77

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
		t.Skip("crash integration test: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("crash integration test: needs root (runc, network namespaces, CNI bridge)")
	}
	for _, bin := range []string{"runc", "ip", "gcc"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("crash integration test: needs %s in PATH (see .ci/run): %v", bin, err)
		}
	}
	for _, p := range []string{"bridge", "host-local"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, p)); err != nil {
			t.Skipf("crash integration test: needs the %s CNI plugin (apt-get install containernetworking-plugins): %v", p, err)
		}
	}
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// daemonBinary builds pod-shim, its monitor and its pause with hack/build.sh,
// once per run, unless POD_SHIM_BIN_DIR names prebuilt ones.
func daemonBinary(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("POD_SHIM_BIN_DIR"); dir != "" {
		return filepath.Join(dir, "pod-shim")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pod-shim-crash-bin-")
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
	config  string

	bridge  string
	netName string
	subnet  *net.IPNet

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	conn   *grpc.ClientConn
	rs     cri.RuntimeServiceClient
	is     cri.ImageServiceClient
}

// newEnv prepares dirs, names and a bridge network config; start() runs the daemon.
func newEnv(t testing.TB) *env {
	t.Helper()
	bin := daemonBinary(t)
	// Short base path: monitor sockets live under the state dir (108-byte limit).
	base, err := os.MkdirTemp("/tmp", "psc")
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
		bridge:  "psc" + suffix,
		netName: "pscnet-" + suffix,
	}
	t.Cleanup(e.cleanup)
	for _, d := range []string{e.cniConf, e.fakeBin, e.ipamDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(e.config, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.subnet = freeSubnet(t)
	e.writeNetConf(e.bridgePlugin())
	return e
}

// freeSubnet picks 10.249.X.0/24 with X random and not routed on this host.
func freeSubnet(t testing.TB) *net.IPNet {
	t.Helper()
	out, _ := exec.Command("ip", "-4", "route", "show").Output()
	for range 50 {
		n, err := rand.Int(rand.Reader, big.NewInt(254))
		if err != nil {
			t.Fatal(err)
		}
		prefix := fmt.Sprintf("10.249.%d.", n.Int64()+1)
		if bytes.Contains(out, []byte(prefix)) {
			continue
		}
		_, subnet, _ := net.ParseCIDR(prefix + "0/24")
		return subnet
	}
	t.Fatal("no free 10.249.X.0/24 subnet")
	return nil
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
		"--insecure-registry", "127.0.0.1",
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

// spawn starts a daemon process with extra environment, without waiting.
func (e *env) spawn(extraEnv ...string) (*exec.Cmd, chan struct{}) {
	t := e.t
	t.Helper()
	logf, err := os.OpenFile(e.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "==== %s pod-shim %v %s\n", time.Now().Format(time.RFC3339Nano), extraEnv, strings.Join(e.args(), " "))
	cmd := exec.Command(e.bin, e.args()...)
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	return cmd, exited
}

// start runs the daemon (with extra environment such as failpoints) and
// waits until it answers Version. It returns how long that took.
func (e *env) start(extraEnv ...string) time.Duration {
	t := e.t
	t.Helper()
	begin := time.Now()
	cmd, exited := e.spawn(extraEnv...)
	e.mu.Lock()
	e.cmd, e.exited = cmd, exited
	e.mu.Unlock()
	if e.conn == nil {
		// Short reconnect backoff: the daemon is restarted all the time
		// here, and grpc's default (1 s and growing) would hide how soon
		// it serves again.
		conn, err := grpc.NewClient("unix://"+e.sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.2, Jitter: 0.1, MaxDelay: 200 * time.Millisecond},
				MinConnectTimeout: 2 * time.Second,
			}))
		if err != nil {
			t.Fatal(err)
		}
		e.conn = conn
		e.rs = cri.NewRuntimeServiceClient(conn)
		e.is = cri.NewImageServiceClient(conn)
	}
	// The bound only stops a broken daemon from hanging the suite.
	deadline := time.Now().Add(90 * time.Second)
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
			return time.Since(begin)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("pod-shim serve did not answer Version within 90s: %v; log:\n%s", lastErr, e.logTail())
	return 0
}

// stop sends SIGTERM and waits for the daemon to exit (SIGKILL after 30s).
func (e *env) stop() {
	e.mu.Lock()
	cmd, exited := e.cmd, e.exited
	e.cmd = nil
	e.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
		e.t.Errorf("pod-shim serve did not exit within 30s of SIGTERM; killed")
	}
}

// kill SIGKILLs the daemon and waits for it to be gone.
func (e *env) kill() {
	e.mu.Lock()
	cmd, exited := e.cmd, e.exited
	e.cmd = nil
	e.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-exited
}

// waitCrash waits for the daemon to exit at a failpoint and checks the status.
func (e *env) waitCrash(step string) {
	e.t.Helper()
	e.mu.Lock()
	cmd, exited := e.cmd, e.exited
	e.mu.Unlock()
	select {
	case <-exited:
	case <-time.After(2 * time.Minute):
		e.t.Fatalf("daemon did not exit at failpoint %s; log:\n%s", step, e.logTail())
	}
	if code := cmd.ProcessState.ExitCode(); code != failpointExit {
		e.t.Fatalf("daemon exited with %d, want %d at failpoint %s; log:\n%s", code, failpointExit, step, e.logTail())
	}
	e.mu.Lock()
	e.cmd = nil
	e.mu.Unlock()
}

// lastStartup is how long the last daemon start took from its spawn to its
// "serving" log line: recovery included, the client's reconnect not.
func (e *env) lastStartup() time.Duration {
	b, _ := os.ReadFile(e.logFile)
	var spawned, serving time.Time
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "==== "); ok {
			spawned, _ = time.Parse(time.RFC3339Nano, strings.Fields(rest)[0])
			serving = time.Time{}
		} else if strings.Contains(l, `msg="pod-shim serving"`) && serving.IsZero() {
			if ts, ok := strings.CutPrefix(strings.Fields(l)[0], "time="); ok {
				serving, _ = time.Parse(time.RFC3339Nano, ts)
			}
		}
	}
	if spawned.IsZero() || serving.IsZero() {
		return 0
	}
	return serving.Sub(spawned)
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

// podConfig is a plain pod on the CNI network.
func (e *env) podConfig(name string) *cri.PodSandboxConfig {
	return &cri.PodSandboxConfig{
		Metadata:     &cri.PodSandboxMetadata{Name: name, Namespace: "crashtest", Uid: randHex(16)},
		Hostname:     name,
		LogDirectory: filepath.Join(e.base, "logs", name),
		Labels:       map[string]string{"test": "crash"},
	}
}

func (e *env) runPod(cfg *cri.PodSandboxConfig) string {
	e.t.Helper()
	r, err := e.rs.RunPodSandbox(ctx(e.t), &cri.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		e.t.Fatalf("RunPodSandbox %s: %v", cfg.Metadata.Name, err)
	}
	return r.PodSandboxId
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

// containerConfig is a busybox container running command.
func containerConfig(name, image string, command ...string) *cri.ContainerConfig {
	return &cri.ContainerConfig{
		Metadata: &cri.ContainerMetadata{Name: name},
		Image:    &cri.ImageSpec{Image: image},
		Command:  command,
		LogPath:  name + ".log",
	}
}

func (e *env) createContainer(podID string, podCfg *cri.PodSandboxConfig, cfg *cri.ContainerConfig) (string, error) {
	r, err := e.rs.CreateContainer(ctx(e.t), &cri.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		return "", err
	}
	return r.ContainerId, nil
}

// startContainer creates and starts a container in the pod.
func (e *env) startContainer(podID string, podCfg *cri.PodSandboxConfig, cfg *cri.ContainerConfig) string {
	e.t.Helper()
	id, err := e.createContainer(podID, podCfg, cfg)
	if err != nil {
		e.t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := e.rs.StartContainer(ctx(e.t), &cri.StartContainerRequest{ContainerId: id}); err != nil {
		e.t.Fatalf("StartContainer: %v", err)
	}
	return id
}

func (e *env) containerStatus(id string) *cri.ContainerStatus {
	e.t.Helper()
	r, err := e.rs.ContainerStatus(ctx(e.t), &cri.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		e.t.Fatalf("ContainerStatus %s: %v", id, err)
	}
	return r.Status
}

func (e *env) podState(id string) cri.PodSandboxState {
	e.t.Helper()
	r, err := e.rs.PodSandboxStatus(ctx(e.t), &cri.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		e.t.Fatalf("PodSandboxStatus %s: %v", id, err)
	}
	return r.Status.State
}

// removeAll stops and removes every pod the daemon lists.
func (e *env) removeAll() {
	e.t.Helper()
	r, err := e.rs.ListPodSandbox(ctx(e.t), &cri.ListPodSandboxRequest{})
	if err != nil {
		e.t.Fatalf("ListPodSandbox: %v", err)
	}
	for _, p := range r.Items {
		if _, err := e.rs.StopPodSandbox(ctx(e.t), &cri.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			e.t.Errorf("StopPodSandbox %s: %v", p.Id, err)
		}
		if _, err := e.rs.RemovePodSandbox(ctx(e.t), &cri.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			e.t.Errorf("RemovePodSandbox %s: %v", p.Id, err)
		}
	}
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

// podDirs lists the pod dirs in the daemon's state dir.
func (e *env) podDirs() []string {
	ents, _ := os.ReadDir(filepath.Join(e.state, "pods"))
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

// runcContainers lists what runc knows under the daemon's runc root.
func (e *env) runcContainers() []string {
	out, err := exec.Command("runc", "--root", filepath.Join(e.state, "runc"), "list", "-q").Output()
	if err != nil {
		return nil
	}
	return strings.Fields(string(out))
}

// monitors lists the pids of pod monitors of this env's daemon.
func (e *env) monitors() []int {
	return processesMatching(func(cmdline []string) bool {
		return len(cmdline) > 1 && strings.HasSuffix(cmdline[0], "pod-shim-monitor") && slices.ContainsFunc(cmdline, func(a string) bool { return strings.HasPrefix(a, e.state+"/") })
	})
}

// processesMatching lists pids whose NUL-split cmdline satisfies f.
func processesMatching(f func([]string) bool) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		if f(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// leftovers reports what of the env's pods is still on the host.
func (e *env) leftovers() []string {
	var problems []string
	if f := e.netnsFiles(); len(f) > 0 {
		problems = append(problems, fmt.Sprintf("netns files left: %v", f))
	}
	if f := e.podDirs(); len(f) > 0 {
		problems = append(problems, fmt.Sprintf("pod dirs left: %v", f))
	}
	if v := e.vethsOnBridge(); len(v) > 0 {
		problems = append(problems, fmt.Sprintf("veths left on %s: %v", e.bridge, v))
	}
	if a := e.ipamAllocations(); len(a) > 0 {
		problems = append(problems, fmt.Sprintf("host-local allocations left: %v", a))
	}
	if m := mountsUnder(e.base); len(m) > 0 {
		problems = append(problems, fmt.Sprintf("mounts left: %v", m))
	}
	if r := e.runcContainers(); len(r) > 0 {
		problems = append(problems, fmt.Sprintf("runc containers left: %v", r))
	}
	if m := e.monitors(); len(m) > 0 {
		problems = append(problems, fmt.Sprintf("monitor processes left: %v", m))
	}
	return problems
}

// noLeftovers fails the test if anything of its pods is left; veths and
// exiting monitors go away asynchronously, so it waits a little for those.
func (e *env) noLeftovers() {
	e.t.Helper()
	var problems []string
	deadline := time.Now().Add(15 * time.Second)
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

// killPods SIGKILLs every process of the env's pods: containers and pause
// (through runc's state) and monitors, as a host reboot would.
func (e *env) killPods() {
	runcRoot := filepath.Join(e.state, "runc")
	for _, id := range e.runcContainers() {
		out, err := exec.Command("runc", "--root", runcRoot, "state", id).Output()
		if err != nil {
			continue
		}
		var st struct{ Pid int }
		if json.Unmarshal(out, &st) == nil && st.Pid > 0 {
			syscall.Kill(st.Pid, syscall.SIGKILL)
		}
	}
	for _, pid := range e.monitors() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// cleanup removes everything the env made, whether or not the daemon works.
func (e *env) cleanup() {
	t := e.t
	if t.Failed() {
		t.Logf("pod-shim daemon log (%s):\n%s", e.logFile, e.logTail())
	}
	if dir := os.Getenv("CRASH_LOG_DIR"); dir != "" {
		// Keep the daemon's whole log for a look at a passing run too.
		if b, err := os.ReadFile(e.logFile); err == nil {
			name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + ".log"
			_ = os.WriteFile(filepath.Join(dir, name), b, 0o644)
		}
	}
	e.mu.Lock()
	running := e.cmd != nil
	e.mu.Unlock()
	if running && e.rs != nil {
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
	for _, id := range e.runcContainers() {
		exec.Command("runc", "--root", runcRoot, "delete", "-f", id).Run()
	}
	for _, pid := range processesMatching(func(cmdline []string) bool {
		return slices.ContainsFunc(cmdline, func(a string) bool { return strings.Contains(a, e.base) })
	}) {
		syscall.Kill(pid, syscall.SIGKILL)
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
	if m := mountsUnder(e.base); len(m) > 0 {
		t.Errorf("cleanup: mounts still under %s, leaving it: %v", e.base, m)
		return
	}
	if err := os.RemoveAll(e.base); err != nil {
		t.Errorf("cleanup: %v", err)
	}
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
