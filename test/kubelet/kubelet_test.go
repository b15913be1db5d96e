// Package kubelet is the end-to-end suite with a real kubelet (issue 7, "A
// real kubelet"): the built pod-shim daemon (test/harness), kubelet v1.37.2
// from test/conformance/build-kubelet.sh running standalone (no API server)
// with deploy/kubelet-config.yaml adjusted to private dirs, static pod
// manifests written into its staticPodPath, and checks on what the kubelet
// reports on its read-only port (127.0.0.1:10255/pods) and on crictl's view.
//
// One daemon and one kubelet serve every scenario; the scenarios are
// parallel subtests of TestKubelet, each with its own static pod, so the
// kubelet's waits (probes, back-offs, grace periods) overlap.
package kubelet

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

// TestMain lets every scenario run at once (unless -parallel is given):
// they mostly wait on the kubelet, and testing's default of GOMAXPROCS (2
// here) would run them two by two.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", "16")
	}
	harness.Main(m)
}

const (
	// NodeName is the kubelet's --hostname-override; static pods are named
	// <manifest name>-<node name>.
	NodeName  = "pod-shim-e2e"
	Namespace = "kubelet-e2e"
	// The kubelet's fixed loopback ports (deploy/kubelet-config.yaml).
	readOnlyURL = "http://127.0.0.1:10255"
	secureURL   = "https://127.0.0.1:10250"
)

var kubeletPorts = []int{10248, 10250, 10255}

// env is the shared daemon + kubelet.
type env struct {
	D         *harness.Daemon
	Image     string // busybox on the loopback registry, pulled by the kubelet through pod-shim
	Kubelet   string // the kubelet binary
	Root      string // the kubelet's --root-dir, under /var/lib
	Manifests string // staticPodPath
	PodLogs   string // podLogsRootDirectory
	Log       string // the kubelet's log
	Work      string // host dirs the pods mount (hostPath volumes)

	mu      sync.Mutex
	timings map[string]time.Duration // manifest written → Running in /pods
	// probedExits are containers with exec probes that a scenario made
	// exit, by id, with how: the only containers a probe may find exited.
	probedExits map[string]string
}

// noteProbedExit records that container id, which has exec probes, exits
// because of the scenario (see the probe race in logcheck_test.go).
func (e *env) noteProbedExit(id, how string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.probedExits[id] = how
}

// probedExit is how container id exited, "" if no scenario made it exit.
func (e *env) probedExit(id string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.probedExits[id]
}

// kubeletBinary finds or builds kubelet v1.37.2 with the conformance build
// script (cached; about 7 minutes cold). It skips the test when that fails.
func kubeletBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KUBELET_BIN"); p != "" {
		return p
	}
	script := filepath.Join(harness.RepoRoot(), "test", "conformance", "build-kubelet.sh")
	var stderr bytes.Buffer
	cmd := exec.Command("bash", script)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("kubelet end-to-end: no kubelet binary: %s failed (%v); CI builds it in hack/test.sh's kubelet step before this suite:\n%s", script, err, tail(stderr.String(), 2000))
	}
	return strings.TrimSpace(string(out))
}

func setup(t *testing.T) *env {
	t.Helper()
	harness.RequireHost(t, harness.Host{
		Suite:   "kubelet end-to-end test",
		Bins:    []string{"runc", "ip", "gcc", "iptables"},
		Plugins: []string{"bridge", "host-local", "portmap"},
		Crictl:  true,
	})
	// Before anything else, so it is released last: other suites and
	// scripts run kubelets on the same ports and dirs.
	harness.LockKube(t, 40*time.Minute)
	for _, p := range kubeletPorts {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), 200*time.Millisecond); err == nil {
			c.Close()
			t.Fatalf("port %d on 127.0.0.1 is in use (another kubelet, e.g. test/conformance/kubelet.sh?); the suite needs 10248, 10250 and 10255", p)
		}
	}
	e := &env{Kubelet: kubeletBinary(t), timings: map[string]time.Duration{}, probedExits: map[string]string{}}
	e.Image = harness.Busybox(t)
	e.D = harness.Start(t, harness.Options{
		Tag:      "kubelet",
		Subnet16: "10.247",
		Config:   "cgroup_driver = 'cgroupfs'\n",
		Crictl:   true,
	})
	root, err := os.MkdirTemp("/var/lib", "kubelet-test-")
	if err != nil {
		t.Fatal(err)
	}
	e.Root = root
	e.Manifests = filepath.Join(root, "manifests")
	e.PodLogs = filepath.Join(root, "pod-logs")
	e.Work = filepath.Join(root, "work")
	e.Log = filepath.Join(root, "kubelet.log")
	for _, dir := range []string{e.Manifests, e.PodLogs, e.Work, filepath.Join(root, "kubelet")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	before := hostState()
	// Registered after the daemon's: runs first, while the daemon still serves.
	t.Cleanup(func() { e.cleanup(t, before) })
	e.startKubelet(t)
	return e
}

// kubeletConfig is deploy/kubelet-config.yaml with this run's socket and
// dirs, and settings that make a test run quick: the kubelet looks at its
// manifest dir every second and resyncs every few seconds, and crash-loop
// back-off starts at 1 s instead of 10 s (ReduceDefaultCrashLoopBackOffDecay).
func (e *env) kubeletConfig(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "deploy", "kubelet-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "containerRuntimeEndpoint:"):
			l = "containerRuntimeEndpoint: unix://" + e.D.Sock
		case strings.HasPrefix(l, "imageServiceEndpoint:"):
			l = "imageServiceEndpoint: unix://" + e.D.Sock
		case strings.HasPrefix(l, "staticPodPath:"):
			l = "staticPodPath: " + e.Manifests
		case strings.HasPrefix(l, "fileCheckFrequency:"):
			l = "fileCheckFrequency: 1s"
		}
		out = append(out, l)
	}
	out = append(out,
		"podLogsRootDirectory: "+e.PodLogs,
		"syncFrequency: 5s",
		"featureGates:",
		"  ReduceDefaultCrashLoopBackOffDecay: true",
	)
	file := filepath.Join(e.Root, "kubelet-config.yaml")
	if err := os.WriteFile(file, []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func (e *env) startKubelet(t *testing.T) {
	t.Helper()
	cfg := e.kubeletConfig(t)
	logf, err := os.Create(e.Log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(e.Kubelet, "--config", cfg, "--root-dir", filepath.Join(e.Root, "kubelet"),
		// -v=3 for "Cancelling current pod sync" (see syncCancelRace).
		"--hostname-override", NodeName, "--v=3")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	logf.Close()
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// Runs before e.cleanup (registered earlier): the kubelet goes first.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			t.Logf("kubelet did not exit 20s after SIGTERM; killing it")
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("kubelet log (%s), last lines:\n%s", e.Log, tail(readFile(e.Log), 8000))
		}
	})
	harness.Eventually(t, "kubelet serves /healthz and /pods", 60*time.Second, func() error {
		select {
		case <-exited:
			t.Fatalf("kubelet exited during start-up (%v):\n%s", cmd.ProcessState, tail(readFile(e.Log), 6000))
		default:
		}
		_, err := e.pods()
		return err
	})
}

// cleanup removes what the kubelet made outside its root dir and then the
// root dir: by then the kubelet has stopped (its own cleanup ran first); the
// daemon's harness cleanup, which runs after this, removes the pods.
func (e *env) cleanup(t *testing.T, before hostSnapshot) {
	if t.Failed() {
		if keep := os.Getenv("KUBELET_E2E_KEEP"); keep != "" {
			os.MkdirAll(keep, 0o755)
			copyFile(e.Log, filepath.Join(keep, "kubelet.log"))
			copyFile(e.D.LogFile, filepath.Join(keep, "pod-shim.log"))
		}
	}
	// Pods the kubelet left (its manifests are gone or it was killed): stop
	// them here so their mounts from the kubelet's dir are released.
	e.removePods(t)
	for _, m := range harness.MountsUnder(e.Root) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Logf("cleanup: unmount %s: %v", m, err)
		}
	}
	// Pod log dirs the kubelet had made in /var/log/pods (see testLogs).
	logDirs, _ := filepath.Glob("/var/log/pods/" + Namespace + "_*")
	for _, dir := range logDirs {
		if !before.logDirs[dir] {
			os.RemoveAll(dir)
		}
	}
	after := hostState()
	for _, dir := range after.newCgroups(before) {
		removeCgroupTree(t, dir)
	}
	for _, c := range after.newChains(before) {
		removeChain(t, c[0], c[1])
	}
	if m := harness.MountsUnder(e.Root); len(m) > 0 {
		t.Errorf("cleanup: mounts still under %s, leaving it: %v", e.Root, m)
		return
	}
	if err := os.RemoveAll(e.Root); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// removePods stops and removes every pod of the daemon, logging errors
// (the harness's cleanup, after this, tries again and checks).
func (e *env) removePods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := e.D.RS.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{})
	if err != nil {
		t.Logf("cleanup: ListPodSandbox: %v", err)
		return
	}
	for _, p := range r.Items {
		t.Logf("cleanup: pod %s (%s) left by the kubelet; removing it", p.Metadata.Name, p.Id)
		if _, err := e.D.RS.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Logf("cleanup: StopPodSandbox %s: %v", p.Id, err)
		}
		if _, err := e.D.RS.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Logf("cleanup: RemovePodSandbox %s: %v", p.Id, err)
		}
	}
}

// hostSnapshot is the host state the kubelet changes outside its dirs:
// kubepods cgroups under cgroupRoot and iptables chains.
type hostSnapshot struct {
	cgroups map[string]bool
	chains  map[[2]string]bool
	logDirs map[string]bool
}

func hostState() hostSnapshot {
	s := hostSnapshot{cgroups: map[string]bool{}, chains: map[[2]string]bool{}, logDirs: map[string]bool{}}
	logDirs, _ := filepath.Glob("/var/log/pods/" + Namespace + "_*")
	for _, d := range logDirs {
		s.logDirs[d] = true
	}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods*")
	more, _ := filepath.Glob("/sys/fs/cgroup/kubepods*")
	for _, d := range append(dirs, more...) {
		s.cgroups[d] = true
	}
	for _, table := range []string{"filter", "nat", "mangle"} {
		out, _ := exec.Command("iptables", "-t", table, "-S").Output()
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "-N" {
				s.chains[[2]string{table, f[1]}] = true
			}
		}
	}
	return s
}

func (s hostSnapshot) newCgroups(before hostSnapshot) []string {
	var out []string
	for d := range s.cgroups {
		if !before.cgroups[d] {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

func (s hostSnapshot) newChains(before hostSnapshot) [][2]string {
	var out [][2]string
	for c := range s.chains {
		if !before.chains[c] && strings.HasPrefix(c[1], "KUBE-") {
			out = append(out, c)
		}
	}
	return out
}

// removeCgroupTree removes a cgroup dir and its children, deepest first.
func removeCgroupTree(t *testing.T, top string) {
	var dirs []string
	filepath.WalkDir(top, func(p string, de os.DirEntry, err error) error {
		if err == nil && de.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cleanup: cgroup %s the kubelet made: %v", dirs[i], err)
		}
	}
}

// removeChain deletes an iptables chain the kubelet made, with its jumps.
func removeChain(t *testing.T, table, chain string) {
	for _, base := range []string{"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"} {
		out, _ := exec.Command("iptables", "-t", table, "-S", base).Output()
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "-A ") && strings.Contains(l+" ", "-j "+chain+" ") {
				args := append([]string{"-t", table, "-D"}, strings.Fields(l)[1:]...)
				exec.Command("iptables", args...).Run()
			}
		}
	}
	exec.Command("iptables", "-t", table, "-F", chain).Run()
	if out, err := exec.Command("iptables", "-t", table, "-X", chain).CombinedOutput(); err != nil {
		t.Errorf("cleanup: iptables -t %s -X %s: %v: %s", table, chain, err, out)
	}
}

// ---- the kubelet's view ----

// Pod is what the suite reads of a v1.Pod from /pods.
type Pod struct {
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
		UID       string `json:"uid"`
	} `json:"metadata"`
	Status PodStatus `json:"status"`
}

type PodStatus struct {
	Phase      string `json:"phase"`
	Reason     string `json:"reason"`
	Message    string `json:"message"`
	PodIP      string `json:"podIP"`
	Conditions []struct {
		Type   string `json:"type"`
		Status string `json:"status"`
	} `json:"conditions"`
	InitContainerStatuses []ContainerStatus `json:"initContainerStatuses"`
	ContainerStatuses     []ContainerStatus `json:"containerStatuses"`
}

type ContainerStatus struct {
	Name         string         `json:"name"`
	Ready        bool           `json:"ready"`
	Started      *bool          `json:"started"`
	RestartCount int            `json:"restartCount"`
	ContainerID  string         `json:"containerID"`
	State        ContainerState `json:"state"`
	LastState    ContainerState `json:"lastState"`
}

type ContainerState struct {
	Waiting *struct {
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"waiting"`
	Running *struct {
		StartedAt time.Time `json:"startedAt"`
	} `json:"running"`
	Terminated *struct {
		ExitCode   int       `json:"exitCode"`
		Reason     string    `json:"reason"`
		Message    string    `json:"message"`
		StartedAt  time.Time `json:"startedAt"`
		FinishedAt time.Time `json:"finishedAt"`
	} `json:"terminated"`
}

// Condition is the pod condition's status ("True", "False", "" if absent).
func (p *Pod) Condition(typ string) string {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

// Container finds a container's status among the app then init containers.
func (p *Pod) Container(name string) *ContainerStatus {
	for _, list := range [][]ContainerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// CRIID is the container's id without the runtime's scheme prefix.
func (c *ContainerStatus) CRIID() string {
	_, id, _ := strings.Cut(c.ContainerID, "://")
	return id
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// pods is the kubelet's /pods on its read-only port.
func (e *env) pods() ([]Pod, error) {
	resp, err := httpClient.Get(readOnlyURL + "/pods")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /pods: %s", resp.Status)
	}
	var list struct {
		Items []Pod `json:"items"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, fmt.Errorf("GET /pods: %w", err)
	}
	return list.Items, nil
}

// pod is the static pod from manifest name, nil when the kubelet lists none.
func (e *env) pod(name string) (*Pod, error) {
	pods, err := e.pods()
	if err != nil {
		return nil, err
	}
	for i := range pods {
		if pods[i].Metadata.Name == name+"-"+NodeName && pods[i].Metadata.Namespace == Namespace {
			return &pods[i], nil
		}
	}
	return nil, nil
}

// waitPod polls /pods until cond accepts the pod (nil error).
func (e *env) waitPod(t *testing.T, name, what string, bound time.Duration, cond func(*Pod) error) *Pod {
	t.Helper()
	var got *Pod
	harness.Eventually(t, name+": "+what, bound, func() error {
		p, err := e.pod(name)
		if err != nil {
			return err
		}
		if p == nil {
			return fmt.Errorf("pod not listed on /pods")
		}
		if err := cond(p); err != nil {
			return fmt.Errorf("%w; status: %s", err, brief(p))
		}
		got = p
		return nil
	})
	return got
}

// brief is a pod's status in one line, for failure messages.
func brief(p *Pod) string {
	s := p.Status.Phase
	if p.Status.Reason != "" {
		s += " (" + p.Status.Reason + ")"
	}
	for _, list := range [][]ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, c := range list {
			s += fmt.Sprintf(" %s:%s/ready=%v/restarts=%d", c.Name, c.State.String(), c.Ready, c.RestartCount)
		}
	}
	return s
}

func (s ContainerState) String() string {
	switch {
	case s.Running != nil:
		return "running"
	case s.Terminated != nil:
		return fmt.Sprintf("terminated(%d,%s)", s.Terminated.ExitCode, s.Terminated.Reason)
	case s.Waiting != nil:
		return "waiting(" + s.Waiting.Reason + ")"
	}
	return "none"
}

// ---- manifests ----

// apply writes a static pod manifest (atomically: the kubelet skips dot
// files) and records when; the test's cleanup deletes it and waits for the
// kubelet to stop the pod. It returns the time it was written.
func (e *env) apply(t *testing.T, name, manifest string) time.Time {
	t.Helper()
	file := filepath.Join(e.Manifests, name+".yaml")
	tmp := filepath.Join(e.Manifests, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := os.Stat(file); err != nil {
			return // the test deleted it itself
		}
		e.deleteManifest(t, name)
		e.waitGone(t, name)
	})
	return written
}

func (e *env) deleteManifest(t *testing.T, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(e.Manifests, name+".yaml")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Error(err)
	}
}

// waitGone waits until the kubelet no longer lists the pod and every
// sandbox of it is stopped.
func (e *env) waitGone(t *testing.T, name string) {
	t.Helper()
	harness.Eventually(t, name+": kubelet drops the pod after its manifest went", 90*time.Second, func() error {
		p, err := e.pod(name)
		if err != nil {
			return err
		}
		if p != nil {
			return fmt.Errorf("still listed: %s", brief(p))
		}
		for _, s := range e.sandboxes(t, name) {
			if s.State == "SANDBOX_READY" {
				return fmt.Errorf("sandbox %s still ready", s.ID)
			}
		}
		return nil
	})
}

// waitRunning waits for phase Running with every app container running and
// records the time from the manifest's write for the summary.
func (e *env) waitRunning(t *testing.T, name string, written time.Time) *Pod {
	t.Helper()
	p := e.waitPod(t, name, "Running", 2*time.Minute, func(p *Pod) error {
		if p.Status.Phase != "Running" {
			return harness.ErrNotYet
		}
		for _, c := range p.Status.ContainerStatuses {
			if c.State.Running == nil {
				return harness.ErrNotYet
			}
		}
		return nil
	})
	e.recordTiming(name, time.Since(written))
	return p
}

func (e *env) recordTiming(name string, d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.timings[name]; !ok {
		e.timings[name] = d
	}
}

// podSpec is a pod manifest: the image placeholder IMAGE is replaced by the
// busybox reference, HOSTDIR by the test's host dir (for hostPath volumes).
func (e *env) manifest(t *testing.T, name, spec string) string {
	t.Helper()
	hostDir := filepath.Join(e.Work, name)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	spec = strings.NewReplacer("IMAGE", e.Image, "HOSTDIR", hostDir).Replace(spec)
	return fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n%s", name, Namespace, spec)
}

// ---- crictl's view ----

type sandbox struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Metadata struct {
		Name    string `json:"name"`
		Attempt int    `json:"attempt"`
	} `json:"metadata"`
}

// sandboxes lists the pod's sandboxes, newest first.
func (e *env) sandboxes(t *testing.T, name string) []sandbox {
	t.Helper()
	var out struct {
		Items []sandbox `json:"items"`
	}
	e.crictlJSON(t, &out, "pods", "-o", "json", "--name", "^"+name+"-"+NodeName+"$", "--namespace", Namespace)
	return out.Items
}

type criContainer struct {
	ID        string `json:"id"`
	SandboxID string `json:"podSandboxId"`
	State     string `json:"state"`
	Metadata  struct {
		Name    string `json:"name"`
		Attempt int    `json:"attempt"`
	} `json:"metadata"`
}

// containers lists every container (any state) of the pod's sandboxes.
func (e *env) containers(t *testing.T, name string) []criContainer {
	t.Helper()
	var all []criContainer
	for _, s := range e.sandboxes(t, name) {
		var out struct {
			Containers []criContainer `json:"containers"`
		}
		e.crictlJSON(t, &out, "ps", "-a", "-o", "json", "--pod", s.ID)
		all = append(all, out.Containers...)
	}
	return all
}

// criStatus is what the suite reads of crictl inspect.
type criStatus struct {
	Status struct {
		State      string `json:"state"`
		CreatedAt  string `json:"createdAt"`
		StartedAt  string `json:"startedAt"`
		FinishedAt string `json:"finishedAt"`
		ExitCode   int    `json:"exitCode"`
		Reason     string `json:"reason"`
		Message    string `json:"message"`
		LogPath    string `json:"logPath"`
	} `json:"status"`
}

func (e *env) inspect(t *testing.T, id string) criStatus {
	t.Helper()
	var s criStatus
	e.crictlJSON(t, &s, "inspect", "-o", "json", id)
	return s
}

// inspectIfPresent is inspect for a container the kubelet may garbage-
// collect at any moment (dead containers of a crash loop beyond the ones it
// keeps): gone (NotFound) is ok=false, any other error fails t.
func (e *env) inspectIfPresent(t *testing.T, id string) (criStatus, bool) {
	t.Helper()
	var s criStatus
	out, err := e.D.CrictlErr("inspect", "-o", "json", id)
	if err != nil {
		if strings.Contains(err.Error(), "NotFound") || strings.Contains(out, "NotFound") {
			return s, false
		}
		t.Fatalf("crictl inspect %s: %v", id, err)
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("crictl inspect %s: %v", id, err)
	}
	return s, true
}

// crictl runs crictl against the daemon and fails t (the calling subtest,
// not the daemon's test) on error.
func (e *env) crictl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.D.CrictlErr(args...)
	if err != nil {
		t.Fatalf("crictl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (e *env) crictlJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := e.crictl(t, args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("crictl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// criTime parses crictl's RFC 3339 timestamps (nanoseconds, from the runtime).
func criTime(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("timestamp %q: %v", s, err)
	}
	return ts
}

// ---- misc ----

func readFile(file string) string {
	b, _ := os.ReadFile(file)
	return string(b)
}

func copyFile(from, to string) {
	if b, err := os.ReadFile(from); err == nil {
		os.WriteFile(to, b, 0o644)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "...\n" + s[len(s)-n:]
	}
	return s
}

// secureGet reads a path from the kubelet's authenticated port, where
// deploy/kubelet-config.yaml allows anonymous requests (AlwaysAllow) on
// loopback. The kubelet's serving certificate is self-signed.
func secureGet(path string) (string, int, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // 127.0.0.1 only, the kubelet's self-signed cert
	}}
	resp, err := c.Get(secureURL + path)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, err
}
