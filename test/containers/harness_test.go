package containers

import (
	"bufio"
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
	"sort"
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
	buildDir  string // holds pod-shim and pod-shim-pause
	buildErr  error

	registryOnce sync.Once
	testRegistry *images.Registry
	busyboxRef   string // 127.0.0.1:PORT/busybox:1.36
	registryErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if testRegistry != nil {
		testRegistry.Close()
	}
	if buildDir != "" && os.Getenv("POD_SHIM_BIN_DIR") == "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// requireHost skips unless the e2e prerequisites are present.
func requireHost(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("end-to-end test: needs root (runc, network namespaces, CNI bridge)")
	}
	for _, bin := range []string{"runc", "ip", "curl", "gcc"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("end-to-end test: needs %s in PATH (see .ci/run): %v", bin, err)
		}
	}
	for _, f := range []string{images.BusyboxPath, filepath.Join(cniBinDir, "bridge"), filepath.Join(cniBinDir, "host-local"), filepath.Join(cniBinDir, "portmap")} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("end-to-end test: needs %s (apt-get install busybox-static containernetworking-plugins): %v", f, err)
		}
	}
	if crictlPath() == "" {
		t.Skip("end-to-end test: needs crictl (go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0)")
	}
}

func crictlPath() string {
	if p, err := exec.LookPath("crictl"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "crictl")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// daemonBinary builds pod-shim and its pause with hack/build.sh, once per run.
func daemonBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		// POD_SHIM_BIN_DIR runs a prebuilt pod-shim (e.g. an older
		// commit's, to compare latencies) instead of building this tree.
		if dir := os.Getenv("POD_SHIM_BIN_DIR"); dir != "" {
			buildDir = dir
			return
		}
		dir, err := os.MkdirTemp("", "pod-shim-ctr-bin-")
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

// registry returns the shared loopback registry and the busybox reference on it.
func registry(t testing.TB) (*images.Registry, string) {
	t.Helper()
	registryOnce.Do(func() {
		testRegistry, busyboxRef, registryErr = images.ServeBusybox()
	})
	if registryErr != nil {
		t.Fatal(registryErr)
	}
	return testRegistry, busyboxRef
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// daemon is one pod-shim serve process with private dirs, CNI config and bridge.
type daemon struct {
	t       testing.TB
	bin     string
	base    string // everything the test writes lives under here
	root    string
	state   string
	sock    string
	cniConf string
	ipamDir string
	logDir  string
	crictlY string
	logFile string
	config  string // --config file, "" for none

	bridge  string
	netName string
	subnet  *net.IPNet

	cmd    *exec.Cmd
	exited chan struct{}

	mu        sync.Mutex
	netnsInos map[uint64]bool // network namespaces of the test's pods, for the leftover checks
	podIDs    map[string]bool
}

// startDaemon makes private dirs, a CNI conflist for a new bridge, starts the
// daemon and waits until crictl version answers. Everything is undone in
// t.Cleanup, also when the test fails.
func startDaemon(t testing.TB) *daemon {
	t.Helper()
	return startDaemonWith(t, "")
}

// startDaemonWith is startDaemon with a config file: configTOML is written
// to the daemon's dir and passed with --config; "" runs on the defaults.
func startDaemonWith(t testing.TB, configTOML string) *daemon {
	t.Helper()
	bin := daemonBinary(t)
	// Short base path: unix socket paths (the daemon's and each pod monitor's) are limited to 108 bytes.
	base, err := os.MkdirTemp("/tmp", "pse")
	if err != nil {
		t.Fatal(err)
	}
	suffix := randHex(3)
	d := &daemon{
		t:         t,
		bin:       bin,
		base:      base,
		root:      filepath.Join(base, "r"),
		state:     filepath.Join(base, "s"),
		sock:      filepath.Join(base, "pod-shim.sock"),
		cniConf:   filepath.Join(base, "cni"),
		ipamDir:   filepath.Join(base, "ipam"),
		logDir:    filepath.Join(base, "logs"),
		crictlY:   filepath.Join(base, "crictl.yaml"),
		logFile:   filepath.Join(base, "daemon.log"),
		bridge:    "psb" + suffix, // 9 bytes, under IFNAMSIZ
		netName:   "psctr-" + suffix,
		netnsInos: map[uint64]bool{},
		podIDs:    map[string]bool{},
	}
	t.Cleanup(d.cleanup)
	for _, dir := range []string{d.cniConf, d.ipamDir, d.logDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if configTOML != "" {
		d.config = filepath.Join(base, "config.toml")
		if err := os.WriteFile(d.config, []byte(configTOML), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d.subnet = freeSubnet(t)
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       d.netName,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      d.bridge,
				"isGateway":   true,
				"ipMasq":      false, // no iptables masquerade rules to leak
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": d.subnet.String()}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": d.ipamDir,
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	writeJSON(t, filepath.Join(d.cniConf, "10-"+d.netName+".conflist"), conf)
	// crictl reads /etc/crictl.yaml unless told otherwise: keep the host's out of it.
	if err := os.WriteFile(d.crictlY, []byte("runtime-endpoint: unix://"+d.sock+"\nimage-endpoint: unix://"+d.sock+"\ntimeout: 30\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.start()
	return d
}

// freeSubnet picks 10.250.X.0/24 with X random and not routed on this host.
func freeSubnet(t testing.TB) *net.IPNet {
	t.Helper()
	out, _ := exec.Command("ip", "-4", "route", "show").Output()
	for range 50 {
		n, err := rand.Int(rand.Reader, big.NewInt(254))
		if err != nil {
			t.Fatal(err)
		}
		x := n.Int64() + 1
		prefix := fmt.Sprintf("10.250.%d.", x)
		if bytes.Contains(out, []byte(prefix)) {
			continue
		}
		_, subnet, _ := net.ParseCIDR(prefix + "0/24")
		return subnet
	}
	t.Fatal("no free 10.250.X.0/24 subnet")
	return nil
}

func writeJSON(t testing.TB, file string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (d *daemon) args() []string {
	args := []string{"serve",
		"--listen", d.sock,
		"--root", d.root,
		"--state", d.state,
		"--cni-conf-dir", d.cniConf,
		"--cni-bin-dir", cniBinDir,
		"--pause-binary", filepath.Join(filepath.Dir(d.bin), "pod-shim-pause"),
		"--runtime", mustLookPath(d.t, "runc"),
		"--log-level", "debug",
	}
	if d.config != "" {
		args = append(args, "--config", d.config)
	}
	return args
}

func mustLookPath(t testing.TB, bin string) string {
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// start runs the daemon (again, with the same dirs) and waits until it answers.
func (d *daemon) start() {
	t := d.t
	t.Helper()
	logf, err := os.OpenFile(d.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(logf, "==== %s pod-shim %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(d.args(), " "))
	cmd := exec.Command(d.bin, d.args()...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Own process group, so the test's terminal signals don't reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	logf.Close()
	d.cmd = cmd
	exited := make(chan struct{})
	d.exited = exited
	go func() { cmd.Wait(); close(exited) }()

	// Readiness is "crictl version answers", as for a user; the bound only
	// stops a broken daemon from hanging the suite.
	deadline := time.Now().Add(60 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("pod-shim serve exited during start-up (%v); log:\n%s", cmd.ProcessState, d.logTail())
		default:
		}
		if _, err := os.Stat(d.sock); err == nil {
			if _, lastErr = d.crictlErr("version"); lastErr == nil {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("pod-shim serve did not answer crictl version within 60s: %v; log:\n%s", lastErr, d.logTail())
}

// stop sends SIGTERM and waits for the daemon to exit (SIGKILL after 30s).
func (d *daemon) stop() error {
	if d.cmd == nil {
		return nil
	}
	defer func() { d.cmd = nil }()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		return errors.New("pod-shim serve did not exit within 30s of SIGTERM; killed")
	}
	if st := d.cmd.ProcessState; st != nil && !st.Success() {
		return fmt.Errorf("pod-shim serve exited with %v after SIGTERM", st)
	}
	return nil
}

func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.logFile)
	const max = 8000
	if len(b) > max {
		b = append([]byte("...\n"), b[len(b)-max:]...)
	}
	return string(b)
}

// crictl runs the real crictl against the daemon and fails the test on error.
func (d *daemon) crictl(args ...string) string {
	d.t.Helper()
	out, err := d.crictlErr(args...)
	if err != nil {
		d.t.Fatalf("crictl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// crictlErr runs crictl and returns stdout; the error carries stderr and the exit code.
func (d *daemon) crictlErr(args ...string) (string, error) {
	full := append([]string{"--config", d.crictlY, "--runtime-endpoint", "unix://" + d.sock, "--image-endpoint", "unix://" + d.sock, "--timeout", "30s"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, crictlPath(), full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), &crictlError{err: err, stderr: strings.TrimSpace(stderr.String()), stdout: strings.TrimSpace(stdout.String())}
	}
	return stdout.String(), nil
}

type crictlError struct {
	err            error
	stdout, stderr string
}

func (e *crictlError) Error() string {
	return fmt.Sprintf("%v; stderr: %s; stdout: %s", e.err, e.stderr, e.stdout)
}

func (e *crictlError) exitCode() int {
	var ee *exec.ExitError
	if errors.As(e.err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// client opens a CRI gRPC connection to the daemon's socket.
func dialCRI(t testing.TB, sock string) (cri.RuntimeServiceClient, cri.ImageServiceClient) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return cri.NewRuntimeServiceClient(conn), cri.NewImageServiceClient(conn)
}

func (d *daemon) client() (cri.RuntimeServiceClient, cri.ImageServiceClient) {
	return dialCRI(d.t, d.sock)
}

// podConfig is a sandbox config in crictl's JSON form (snake_case, as the CRI types' json tags).
func (d *daemon) podConfig(name string) string {
	d.t.Helper()
	logDir := filepath.Join(d.logDir, name)
	file := filepath.Join(d.base, "pod-"+name+".json")
	writeJSON(d.t, file, map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "e2e", "uid": randHex(16), "attempt": 0},
		"hostname":      name,
		"log_directory": logDir,
		"labels":        map[string]string{"e2e": "pod-shim", "pod": name},
		"linux":         map[string]any{},
	})
	return file
}

func (d *daemon) containerConfig(name, image string, command ...string) string {
	d.t.Helper()
	file := filepath.Join(d.base, "ctr-"+name+"-"+randHex(3)+".json")
	writeJSON(d.t, file, map[string]any{
		"metadata": map[string]any{"name": name, "attempt": 0},
		"image":    map[string]string{"image": image},
		"command":  command,
		"log_path": name + ".log",
		"labels":   map[string]string{"e2e": "pod-shim"},
		"linux":    map[string]any{},
	})
	return file
}

// runPod runs a pod through crictl runp and records what the leftover checks need.
func (d *daemon) runPod(name string) (id string, cfg string) {
	d.t.Helper()
	cfg = d.podConfig(name)
	id = strings.TrimSpace(d.crictl("runp", cfg))
	if len(id) != 64 {
		d.t.Fatalf("crictl runp printed %q, want a 64-hex pod id", id)
	}
	d.mu.Lock()
	d.podIDs[id] = true
	d.mu.Unlock()
	return id, cfg
}

// recordNetns remembers the network namespaces (by inode) of every container
// running under the daemon's runc root, the pause containers included, so the
// leftover checks find a pinned netns by identity whatever it is named. It
// fails if the given containers are not among them or share the host's netns.
func (d *daemon) recordNetns(containerIDs ...string) {
	d.t.Helper()
	list, err := d.runcList()
	if err != nil {
		d.t.Fatal(err)
	}
	var host unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &host); err != nil {
		d.t.Fatal(err)
	}
	byID := map[string]uint64{}
	for _, c := range list {
		if c.Pid <= 0 || c.Status != "running" {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", c.Pid), &st); err != nil {
			continue
		}
		byID[c.ID] = st.Ino
	}
	for _, id := range containerIDs {
		ino, ok := byID[id]
		if !ok {
			d.t.Fatalf("container %s is not running under runc root %s (runc list: %+v)", id, d.runcRoot(), list)
		}
		if ino == host.Ino {
			d.t.Fatalf("container %s runs in the host's network namespace", id)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ino := range byID {
		if ino != host.Ino {
			d.netnsInos[ino] = true
		}
	}
}

func (d *daemon) runcRoot() string { return filepath.Join(d.state, "runc") }

type runcContainer struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
}

func (d *daemon) runcList() ([]runcContainer, error) {
	out, err := exec.Command("runc", "--root", d.runcRoot(), "list", "--format", "json").Output()
	if err != nil {
		return nil, fmt.Errorf("runc --root %s list: %w", d.runcRoot(), err)
	}
	var list []runcContainer
	if s := strings.TrimSpace(string(out)); s != "" && s != "null" {
		if err := json.Unmarshal(out, &list); err != nil {
			return nil, fmt.Errorf("runc list output %q: %w", out, err)
		}
	}
	return list, nil
}

// mountsUnder lists mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	var out []string
	for _, m := range mountInfo() {
		if m.point == dir || strings.HasPrefix(m.point, dir+"/") {
			out = append(out, m.point)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

type mount struct{ root, point, fstype string }

func mountInfo() []mount {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		m := mount{root: unescape(fields[3]), point: unescape(fields[4])}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				m.fstype = fields[i+1]
				break
			}
		}
		out = append(out, m)
	}
	return out
}

func unescape(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// nsfsMountsOf lists mounts pinning one of the given network namespaces.
func nsfsMountsOf(inos map[uint64]bool) []string {
	var out []string
	for _, m := range mountInfo() {
		if m.fstype != "nsfs" {
			continue
		}
		var ino uint64
		if _, err := fmt.Sscanf(m.root, "net:[%d]", &ino); err == nil && inos[ino] {
			out = append(out, m.point)
		}
	}
	return out
}

type proc struct {
	pid     int
	cmdline string
	exe     string
}

func processes() []proc {
	ents, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		out = append(out, proc{pid: pid, cmdline: strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " ")), exe: strings.TrimSuffix(exe, " (deleted)")})
	}
	return out
}

// monitors lists pod monitor processes belonging to this daemon: `pod-shim
// monitor` processes started from this test's binary or naming this state dir.
func (d *daemon) monitors() []proc {
	var out []proc
	for _, p := range processes() {
		if d.cmd != nil && p.pid == d.cmd.Process.Pid {
			continue
		}
		ours := p.exe == d.bin || strings.Contains(p.cmdline, d.state) || strings.Contains(p.cmdline, d.base)
		if !ours {
			for id := range d.podIDs {
				if strings.Contains(p.cmdline, id) {
					ours = true
				}
			}
		}
		if ours && strings.Contains(p.cmdline, "pod-shim") && strings.Contains(p.cmdline, "monitor") {
			out = append(out, p)
		}
	}
	return out
}

// vethsOnBridge lists interfaces enslaved to the test's bridge.
func (d *daemon) vethsOnBridge() []string {
	out, err := exec.Command("ip", "-o", "link", "show", "master", d.bridge).Output()
	if err != nil {
		return nil // no bridge, no veths on it
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			names = append(names, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	return names
}

// ipamAllocations lists host-local allocation files (named by IP) of the test's network.
func (d *daemon) ipamAllocations() []string {
	ents, _ := os.ReadDir(filepath.Join(d.ipamDir, d.netName))
	var out []string
	for _, e := range ents {
		if net.ParseIP(e.Name()) != nil {
			out = append(out, e.Name())
		}
	}
	return out
}

// leftovers reports everything of the test's pods still on the host (issue 2, item 2).
func (d *daemon) leftovers() []string {
	var problems []string
	d.mu.Lock()
	inos := map[uint64]bool{}
	for k := range d.netnsInos {
		inos[k] = true
	}
	ids := map[string]bool{}
	for k := range d.podIDs {
		ids[k] = true
	}
	d.mu.Unlock()

	if len(inos) == 0 {
		problems = append(problems, "test bug: no pod network namespace was recorded")
	}
	if m := nsfsMountsOf(inos); len(m) > 0 {
		problems = append(problems, fmt.Sprintf("network namespaces still pinned at %v", m))
	}
	filepath.WalkDir(d.state, func(p string, e os.DirEntry, err error) error {
		if err == nil && strings.Contains(strings.ToLower(filepath.Base(p)), "netns") && !e.IsDir() {
			problems = append(problems, "netns file left in the state dir: "+p)
		}
		return nil
	})
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			name := strings.Fields(line + " x")[0]
			for id := range ids {
				if len(name) >= 12 && strings.Contains(id, name) || strings.Contains(name, id[:12]) {
					problems = append(problems, "ip netns still lists "+name)
				}
			}
		}
	}
	for _, dir := range []string{d.root, d.state} {
		if m := mountsUnder(dir); len(m) > 0 {
			problems = append(problems, fmt.Sprintf("mounts left under %s: %v", dir, m))
		}
	}
	if v := d.vethsOnBridge(); len(v) > 0 {
		problems = append(problems, fmt.Sprintf("veths left on bridge %s: %v", d.bridge, v))
	}
	if list, err := d.runcList(); err != nil {
		problems = append(problems, err.Error())
	} else if len(list) > 0 {
		problems = append(problems, fmt.Sprintf("runc containers left: %+v", list))
	}
	if m := d.monitors(); len(m) > 0 {
		problems = append(problems, fmt.Sprintf("monitor processes left: %+v", m))
	}
	if a := d.ipamAllocations(); len(a) > 0 {
		problems = append(problems, fmt.Sprintf("host-local IP allocations left in %s: %v", filepath.Join(d.ipamDir, d.netName), a))
	}
	if m, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", d.netName+"-*")); len(m) > 0 {
		problems = append(problems, fmt.Sprintf("CNI result cache left: %v", m))
	}
	return problems
}

// cleanup removes everything the test made, in an order that works even when
// the daemon is broken: CRI removal first, then by hand.
func (d *daemon) cleanup() {
	t := d.t
	if t.Failed() {
		t.Logf("pod-shim daemon log (%s):\n%s", d.logFile, d.logTail())
	}
	if d.cmd != nil {
		if conn, err := grpc.NewClient("unix://"+d.sock, grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil {
			rs := cri.NewRuntimeServiceClient(conn)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			if resp, err := rs.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{}); err == nil {
				for _, p := range resp.Items {
					if _, err := rs.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
						t.Logf("cleanup: StopPodSandbox %s: %v", p.Id, err)
					}
					if _, err := rs.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
						t.Logf("cleanup: RemovePodSandbox %s: %v", p.Id, err)
					}
				}
			}
			cancel()
			conn.Close()
		}
		if err := d.stop(); err != nil {
			t.Logf("cleanup: %v", err)
		}
	}
	// By hand, whatever the daemon left.
	if list, err := d.runcList(); err == nil {
		for _, c := range list {
			exec.Command("runc", "--root", d.runcRoot(), "delete", "-f", c.ID).Run()
		}
	}
	for _, p := range d.monitors() {
		syscall.Kill(p.pid, syscall.SIGKILL)
	}
	for _, p := range processes() {
		if p.exe == d.bin && strings.Contains(p.cmdline, d.base) {
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
	d.mu.Lock()
	for _, m := range nsfsMountsOf(d.netnsInos) {
		unix.Unmount(m, unix.MNT_DETACH)
		if strings.HasPrefix(m, "/run/netns/") || strings.HasPrefix(m, "/var/run/netns/") {
			os.Remove(m)
		}
	}
	d.mu.Unlock()
	for _, m := range mountsUnder(d.base) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Logf("cleanup: unmount %s: %v", m, err)
		}
	}
	for _, v := range d.vethsOnBridge() {
		exec.Command("ip", "link", "del", v).Run()
	}
	if err := exec.Command("ip", "link", "show", d.bridge).Run(); err == nil {
		if out, err := exec.Command("ip", "link", "del", d.bridge).CombinedOutput(); err != nil {
			t.Errorf("cleanup: ip link del %s: %v: %s", d.bridge, err, out)
		}
	}
	if m, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", d.netName+"-*")); len(m) > 0 {
		for _, f := range m {
			os.Remove(f)
		}
	}
	// Never RemoveAll through a live mount: it would delete what the mount shows.
	if m := mountsUnder(d.base); len(m) > 0 {
		t.Errorf("cleanup: mounts still under %s, leaving it: %v", d.base, m)
		return
	}
	if err := os.RemoveAll(d.base); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// eventually polls f until it returns nil; the bound only stops a hang.
func eventually(t testing.TB, what string, bound time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(bound)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, bound, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
