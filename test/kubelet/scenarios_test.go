package kubelet

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pod-shim/pod-shim/test/harness"
)

// idle waits for SIGTERM and exits at once on it (a shell as a container's
// PID 1 ignores signals it has no trap for, which would make every pod
// stop take its whole grace period).
const idle = "trap 'exit 0' TERM; while true; do sleep 1; done"

// ctr is a container entry of a manifest: name, command (a sh -c script)
// and extra YAML lines (indented 4 spaces).
func ctr(name, script string, extra ...string) string {
	s := fmt.Sprintf("  - name: %s\n    image: IMAGE\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", %q]\n", name, script)
	for _, l := range extra {
		s += "    " + l + "\n"
	}
	return s
}

const (
	dataVolume = "  volumes:\n  - name: data\n    emptyDir: {}\n"
	hostVolume = "  volumes:\n  - name: host\n    hostPath: {path: HOSTDIR, type: Directory}\n"
	mountData  = "volumeMounts: [{name: data, mountPath: /data}]"
	mountHost  = "volumeMounts: [{name: host, mountPath: /host}]"
)

func podSpec(restartPolicy string, parts ...string) string {
	return "  restartPolicy: " + restartPolicy + "\n  terminationGracePeriodSeconds: 3\n" + strings.Join(parts, "")
}

func TestKubelet(t *testing.T) {
	e := setup(t)
	t.Run("scenarios", func(t *testing.T) {
		for _, sc := range []struct {
			name string
			fn   func(*testing.T, *env)
		}{
			{"InitContainersInOrder", testInitOrder},
			{"InitFailureNeverFailsPod", testInitFailNever},
			{"InitRetriedOnFailure", testInitRetryOnFailure},
			{"RestartAlwaysBackoff", testRestartBackoff},
			{"OnFailureExitZeroCompletes", testOnFailureCompletes},
			{"SidecarStartsFirst", testSidecar},
			{"ExecProbes", testProbes},
			{"LifecycleHooks", testHooks},
			{"PauseKilledRecreatesSandbox", testPauseKilled},
			{"PodIPFromHost", testPodIP},
			{"Logs", testLogs},
			{"TerminationMessage", testTerminationMessage},
			{"DeleteManifestRemovesPod", testDeleteManifest},
		} {
			t.Run(sc.name, func(t *testing.T) {
				t.Parallel()
				sc.fn(t, e)
			})
		}
	})
	e.mu.Lock()
	names := make([]string, 0, len(e.timings))
	for n := range e.timings {
		names = append(names, n)
	}
	sort.Strings(names)
	var sum strings.Builder
	for _, n := range names {
		fmt.Fprintf(&sum, "\n  %-22s %6.2fs", n, e.timings[n].Seconds())
	}
	e.mu.Unlock()
	t.Logf("manifest written → Running on /pods (%d pods, started together on 2 cores):%s", len(names), sum.String())
	t.Run("KubeletLogClean", func(t *testing.T) { testKubeletLog(t, e) })
}

// Init containers run one after the other, each only once the previous one
// exited 0, and the app container only after all of them.
func testInitOrder(t *testing.T, e *env) {
	name := "init-order"
	w := e.apply(t, name, e.manifest(t, name, podSpec("Always", dataVolume,
		"  initContainers:\n",
		ctr("init-1", "echo init-1 >> /data/order; sleep 1", mountData),
		ctr("init-2", "echo init-2 >> /data/order", mountData),
		"  containers:\n",
		ctr("app", "echo app >> /data/order; cat /data/order; "+idle, mountData),
	)))
	p := e.waitRunning(t, name, w)
	for _, n := range []string{"init-1", "init-2"} {
		c := p.Container(n)
		if c == nil || c.State.Terminated == nil || c.State.Terminated.ExitCode != 0 || c.RestartCount != 0 {
			t.Fatalf("init container %s: %+v, want terminated with 0 and no restart", n, c)
		}
	}
	app := p.Container("app")
	e.waitLog(t, app.CRIID(), "init-1\ninit-2\napp\n")
	// The runtime's own timestamps (ns): each one created after the one
	// before it finished.
	i1 := e.inspect(t, p.Container("init-1").CRIID())
	i2 := e.inspect(t, p.Container("init-2").CRIID())
	a := e.inspect(t, app.CRIID())
	if !criTime(t, i2.Status.CreatedAt).After(criTime(t, i1.Status.FinishedAt)) {
		t.Errorf("init-2 created at %s, before init-1 finished at %s", i2.Status.CreatedAt, i1.Status.FinishedAt)
	}
	if !criTime(t, a.Status.CreatedAt).After(criTime(t, i2.Status.FinishedAt)) {
		t.Errorf("app created at %s, before init-2 finished at %s", a.Status.CreatedAt, i2.Status.FinishedAt)
	}
}

// A failing init container under restartPolicy Never fails the pod; the
// app container is never created.
func testInitFailNever(t *testing.T, e *env) {
	name := "init-fail"
	w := e.apply(t, name, e.manifest(t, name, podSpec("Never",
		"  initContainers:\n",
		ctr("init", "echo failing; exit 3"),
		"  containers:\n",
		ctr("app", idle),
	)))
	p := e.waitPod(t, name, "phase Failed", 2*time.Minute, func(p *Pod) error {
		if p.Status.Phase != "Failed" {
			return harness.ErrNotYet
		}
		return nil
	})
	t.Logf("manifest → Failed: %.2fs", time.Since(w).Seconds())
	c := p.Container("init")
	if c == nil || c.State.Terminated == nil || c.State.Terminated.ExitCode != 3 || c.RestartCount != 0 {
		t.Errorf("init container: %+v, want terminated with 3 and no restart", c)
	}
	if app := p.Container("app"); app != nil && (app.State.Running != nil || app.State.Terminated != nil || app.ContainerID != "") {
		t.Errorf("app container status %+v: it must never have been created", app)
	}
	// Once the pod is Failed the kubelet terminates it: it stops the pod's
	// sandbox and will never start anything in it again. Checking the
	// runtime after that covers every sync the kubelet made of the pod.
	harness.Eventually(t, name+": the kubelet stops the failed pod's sandbox", 2*time.Minute, func() error {
		sbs := e.sandboxes(t, name)
		if len(sbs) == 0 {
			return fmt.Errorf("no sandbox listed")
		}
		for _, s := range sbs {
			if s.State != "SANDBOX_NOTREADY" {
				return fmt.Errorf("sandbox %s is %s: %w", s.ID, s.State, harness.ErrNotYet)
			}
		}
		return nil
	})
	for _, c := range e.containers(t, name) {
		if c.Metadata.Name == "app" {
			t.Errorf("the runtime has an app container %s (%s) in a pod whose init container failed", c.ID, c.State)
		}
		if c.Metadata.Name == "init" && c.Metadata.Attempt != 0 {
			t.Errorf("init container retried (attempt %d) under restartPolicy Never", c.Metadata.Attempt)
		}
	}
}

// Under OnFailure a failing init container is retried until it succeeds,
// then the app runs.
func testInitRetryOnFailure(t *testing.T, e *env) {
	name := "init-retry"
	w := e.apply(t, name, e.manifest(t, name, podSpec("OnFailure", dataVolume,
		"  initContainers:\n",
		ctr("init", "n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; echo try $n; [ $n -ge 3 ]", mountData),
		"  containers:\n",
		ctr("app", "echo init ran $(cat /data/n) times; "+idle, mountData),
	)))
	p := e.waitRunning(t, name, w)
	if c := p.Container("init"); c == nil || c.RestartCount != 2 || c.State.Terminated == nil || c.State.Terminated.ExitCode != 0 {
		t.Errorf("init container: %+v, want 2 restarts and a final exit 0", c)
	}
	e.waitLog(t, p.Container("app").CRIID(), "init ran 3 times\n")
}

var backoffRe = regexp.MustCompile(`back-off (\S+) restarting failed container`)

// restartPolicy Always restarts a crashing container, with a back-off the
// kubelet doubles each time (its CrashLoopBackOff message says by how much)
// and a restartCount that only rises.
func testRestartBackoff(t *testing.T, e *env) {
	name := "crash-loop"
	w := e.apply(t, name, e.manifest(t, name, podSpec("Always",
		"  containers:\n",
		ctr("crash", "echo crashing; exit 1"),
	)))
	var backoffs []time.Duration
	lastCount := -1
	var p *Pod
	harness.Eventually(t, name+": four restarts and two back-off steps", 3*time.Minute, func() error {
		var err error
		if p, err = e.pod(name); err != nil || p == nil {
			return fmt.Errorf("pod not listed: %v", err)
		}
		c := p.Container("crash")
		if c == nil {
			return harness.ErrNotYet
		}
		if c.RestartCount < lastCount {
			t.Fatalf("restartCount went down from %d to %d", lastCount, c.RestartCount)
		}
		lastCount = c.RestartCount
		if c.State.Waiting != nil && c.State.Waiting.Reason == "CrashLoopBackOff" {
			if m := backoffRe.FindStringSubmatch(c.State.Waiting.Message); m != nil {
				d, err := time.ParseDuration(m[1])
				if err != nil {
					t.Fatalf("back-off %q in %q: %v", m[1], c.State.Waiting.Message, err)
				}
				if n := len(backoffs); n == 0 || backoffs[n-1] != d {
					backoffs = append(backoffs, d)
				}
			}
		}
		if c.RestartCount >= 4 && len(backoffs) >= 2 {
			return nil
		}
		return fmt.Errorf("restarts %d, back-offs seen %v: %w", c.RestartCount, backoffs, harness.ErrNotYet)
	})
	t.Logf("manifest → 4 restarts: %.1fs; back-offs the kubelet announced: %v", time.Since(w).Seconds(), backoffs)
	for i := 1; i < len(backoffs); i++ {
		if backoffs[i] <= backoffs[i-1] {
			t.Errorf("back-off did not grow: %v", backoffs)
		}
	}
	if p.Status.Phase != "Running" {
		t.Errorf("phase %s, want Running for a crash-looping container under Always", p.Status.Phase)
	}
	c := p.Container("crash")
	if c.LastState.Terminated == nil || c.LastState.Terminated.ExitCode != 1 {
		t.Errorf("lastState %+v, want terminated with exit code 1", c.LastState)
	}
	// The runtime's start times: when each attempt started (for the log).
	var starts []time.Time
	for _, x := range e.containers(t, name) {
		// The kubelet removes dead attempts beyond the ones it keeps while
		// we look: one gone between list and inspect is skipped.
		if s, ok := e.inspectIfPresent(t, x.ID); ok && s.Status.StartedAt != "" && !strings.HasPrefix(s.Status.StartedAt, "1970") {
			starts = append(starts, criTime(t, s.Status.StartedAt))
		}
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
	var gaps []string
	for i := 1; i < len(starts); i++ {
		gaps = append(gaps, starts[i].Sub(starts[i-1]).Round(100*time.Millisecond).String())
	}
	t.Logf("gaps between the starts of the attempts the runtime still holds: %v", gaps)
}

// OnFailure with exit 0: the pod completes, nothing restarts.
func testOnFailureCompletes(t *testing.T, e *env) {
	name := "complete"
	w := e.apply(t, name, e.manifest(t, name, podSpec("OnFailure",
		"  containers:\n",
		ctr("job", "echo done; exit 0"),
	)))
	p := e.waitPod(t, name, "phase Succeeded", 2*time.Minute, func(p *Pod) error {
		if p.Status.Phase != "Succeeded" {
			return harness.ErrNotYet
		}
		return nil
	})
	t.Logf("manifest → Succeeded: %.2fs", time.Since(w).Seconds())
	c := p.Container("job")
	if c == nil || c.RestartCount != 0 || c.State.Terminated == nil || c.State.Terminated.ExitCode != 0 || c.State.Terminated.Reason != "Completed" {
		t.Errorf("job container %+v, want terminated Completed with 0, no restart", c)
	}
}

// A sidecar (an init container with restartPolicy Always) starts before the
// app and keeps running beside it.
func testSidecar(t *testing.T, e *env) {
	name := "sidecar"
	w := e.apply(t, name, e.manifest(t, name, podSpec("Always", dataVolume,
		"  initContainers:\n",
		ctr("sidecar", "echo sidecar-up > /data/sidecar; "+idle, mountData, "restartPolicy: Always",
			"startupProbe: {exec: {command: [test, -f, /data/sidecar]}, periodSeconds: 1}"),
		"  containers:\n",
		ctr("app", "cat /data/sidecar; "+idle, mountData),
	)))
	p := e.waitRunning(t, name, w)
	sc := p.Container("sidecar")
	if sc == nil || sc.State.Running == nil || sc.Started == nil || !*sc.Started {
		t.Fatalf("sidecar status %+v, want running and started", sc)
	}
	e.waitLog(t, p.Container("app").CRIID(), "sidecar-up\n")
	s := e.inspect(t, sc.CRIID())
	a := e.inspect(t, p.Container("app").CRIID())
	if !criTime(t, a.Status.CreatedAt).After(criTime(t, s.Status.StartedAt)) {
		t.Errorf("app created at %s, before the sidecar started at %s", a.Status.CreatedAt, s.Status.StartedAt)
	}
	if s.Status.State != "CONTAINER_RUNNING" || a.Status.State != "CONTAINER_RUNNING" {
		t.Errorf("runtime states: sidecar %s, app %s; want both running", s.Status.State, a.Status.State)
	}
}

// Exec probes (run through ExecSync): the startup probe holds the others
// back until it passes, readiness flips the container's and the pod's Ready
// both ways, and a failed liveness probe restarts the container.
func testProbes(t *testing.T, e *env) {
	name := "probes"
	w := e.apply(t, name, e.manifest(t, name, podSpec("Always",
		"  containers:\n",
		ctr("probed", "touch /tmp/ready; "+idle,
			"startupProbe: {exec: {command: [sh, -c, 'echo >> /tmp/startup-tries; test -f /tmp/started']}, periodSeconds: 1, failureThreshold: 1000}",
			"readinessProbe: {exec: {command: [test, -f, /tmp/ready]}, periodSeconds: 1, failureThreshold: 1}",
			"livenessProbe: {exec: {command: [sh, -c, 'test ! -f /tmp/dead']}, periodSeconds: 1, failureThreshold: 1}"),
	)))
	p := e.waitRunning(t, name, w)
	id := p.Container("probed").CRIID()
	// Nothing creates /tmp/started: the startup probe keeps failing (each
	// try leaves a line in /tmp/startup-tries), so after three tries the
	// container is neither started nor ready although /tmp/ready exists.
	harness.Eventually(t, name+": the startup probe failed three times", time.Minute, func() error {
		out, err := e.D.CrictlErr("exec", "-s", id, "cat", "/tmp/startup-tries")
		if err != nil {
			return err
		}
		if n := strings.Count(out, "\n"); n < 3 {
			return fmt.Errorf("%d startup probe tries: %w", n, harness.ErrNotYet)
		}
		return nil
	})
	p, err := e.pod(name)
	if err != nil || p == nil {
		t.Fatalf("pod %s on /pods: %v", name, err)
	}
	if c := p.Container("probed"); c.Started != nil && *c.Started || c.Ready {
		t.Fatalf("started/ready before the startup probe passed: %s", brief(p))
	}
	e.crictl(t, "exec", "-s", id, "touch", "/tmp/started")
	cond := func(ready bool) func(*Pod) error {
		return func(p *Pod) error {
			c := p.Container("probed")
			if c.Started == nil || !*c.Started || c.Ready != ready || c.RestartCount != 0 {
				return harness.ErrNotYet
			}
			if want := map[bool]string{true: "True", false: "False"}[ready]; p.Condition("Ready") != want {
				return fmt.Errorf("pod condition Ready %q: %w", p.Condition("Ready"), harness.ErrNotYet)
			}
			return nil
		}
	}
	e.waitPod(t, name, "started and Ready once the startup probe passes", time.Minute, cond(true))
	e.crictl(t, "exec", "-s", id, "rm", "/tmp/ready")
	e.waitPod(t, name, "not Ready after the readiness probe fails", time.Minute, cond(false))
	e.crictl(t, "exec", "-s", id, "touch", "/tmp/ready")
	e.waitPod(t, name, "Ready again after the readiness probe passes", time.Minute, cond(true))
	e.noteProbedExit(id, "killed by the kubelet after its liveness probe failed")
	e.crictl(t, "exec", "-s", id, "touch", "/tmp/dead")
	p = e.waitPod(t, name, "restarted after the liveness probe failed", time.Minute, func(p *Pod) error {
		c := p.Container("probed")
		if c.RestartCount < 1 || c.LastState.Terminated == nil || c.State.Running == nil {
			return harness.ErrNotYet
		}
		return nil
	})
	c := p.Container("probed")
	if c.CRIID() == id {
		t.Errorf("still the same container %s after a liveness restart", id)
	}
	e.noteProbedExit(c.CRIID(), "stopped by the kubelet when the test deletes the pod's manifest")
}

// postStart runs after the container starts, preStop before it is stopped.
func testHooks(t *testing.T, e *env) {
	name := "hooks"
	events := filepath.Join(e.Work, name, "events")
	w := e.apply(t, name, e.manifest(t, name, podSpec("Always", hostVolume,
		"  containers:\n",
		ctr("hooked", "echo main >> /host/events; "+idle, mountHost,
			`lifecycle: {postStart: {exec: {command: [sh, -c, "echo post-start >> /host/events"]}}, preStop: {exec: {command: [sh, -c, "echo pre-stop >> /host/events"]}}}`),
	)))
	e.waitRunning(t, name, w)
	harness.Eventually(t, "postStart hook ran", 30*time.Second, func() error {
		if b := readFile(events); !strings.Contains(b, "post-start\n") {
			return fmt.Errorf("events %q", b)
		}
		return nil
	})
	if b := readFile(events); strings.Contains(b, "pre-stop") {
		t.Fatalf("preStop ran while the pod runs: %q", b)
	}
	e.deleteManifest(t, name)
	e.waitGone(t, name)
	lines := strings.Fields(readFile(events))
	if len(lines) == 0 || lines[len(lines)-1] != "pre-stop" || strings.Count(readFile(events), "pre-stop") != 1 {
		t.Errorf("events %q: want pre-stop once, last", lines)
	}
}

// Killing the pause process (the sandbox's PID 1) makes the kubelet make a
// new sandbox and run the init containers again.
func testPauseKilled(t *testing.T, e *env) {
	name := "pause-kill"
	inits := filepath.Join(e.Work, name, "inits")
	w := e.apply(t, name, e.manifest(t, name, podSpec("Always", hostVolume,
		"  initContainers:\n",
		ctr("init", "echo init >> /host/inits", mountHost),
		"  containers:\n",
		ctr("app", idle, mountHost),
	)))
	e.waitRunning(t, name, w)
	sbs := e.sandboxes(t, name)
	if len(sbs) != 1 || sbs[0].State != "SANDBOX_READY" {
		t.Fatalf("sandboxes %+v, want one ready", sbs)
	}
	first := sbs[0]
	pid := e.runcPid(t, first.ID)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill pause %d: %v", pid, err)
	}
	killed := time.Now()
	var second sandbox
	harness.Eventually(t, "a new ready sandbox", 2*time.Minute, func() error {
		for _, s := range e.sandboxes(t, name) {
			if s.ID != first.ID && s.State == "SANDBOX_READY" {
				second = s
				return nil
			}
		}
		return harness.ErrNotYet
	})
	p := e.waitPod(t, name, "Running in the new sandbox", 2*time.Minute, func(p *Pod) error {
		app := p.Container("app")
		if p.Status.Phase != "Running" || app == nil || app.State.Running == nil {
			return harness.ErrNotYet
		}
		for _, c := range e.containers(t, name) {
			if c.ID == app.CRIID() && c.SandboxID != second.ID {
				return fmt.Errorf("app %s still in sandbox %s", c.ID, c.SandboxID)
			}
		}
		return nil
	})
	t.Logf("pause killed → new sandbox Running: %.2fs", time.Since(killed).Seconds())
	if second.Metadata.Attempt <= first.Metadata.Attempt {
		t.Errorf("new sandbox attempt %d, want more than %d", second.Metadata.Attempt, first.Metadata.Attempt)
	}
	if n := strings.Count(readFile(inits), "init\n"); n != 2 {
		t.Errorf("init container ran %d times, want 2 (once per sandbox)", n)
	}
	if st := e.sandboxState(t, first.ID); st != "SANDBOX_NOTREADY" && st != "" {
		t.Errorf("the old sandbox is %s, want NOTREADY or removed", st)
	}
	_ = p
}

// The pod's IP (from the bridge network) serves HTTP to the host.
func testPodIP(t *testing.T, e *env) {
	name := "web"
	w := e.apply(t, name, e.manifest(t, name, podSpec("Always",
		"  containers:\n",
		ctr("httpd", "mkdir -p /www && echo hello from a kubelet pod > /www/index.html && exec httpd -f -p 8080 -h /www"),
	)))
	p := e.waitRunning(t, name, w)
	ip := net.ParseIP(p.Status.PodIP)
	if ip == nil || !e.D.Subnet.Contains(ip) {
		t.Fatalf("podIP %q, want one in the bridge's subnet %s", p.Status.PodIP, e.D.Subnet)
	}
	var body string
	harness.Eventually(t, "GET http://"+ip.String()+":8080/ from the host", 30*time.Second, func() error {
		resp, err := httpClient.Get("http://" + net.JoinHostPort(ip.String(), "8080") + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		return err
	})
	if body != "hello from a kubelet pod\n" {
		t.Errorf("body %q", body)
	}
}

// Container logs as `kubectl logs` gets them (the kubelet's /containerLogs,
// which is on the authenticated port 10250: the read-only port does not
// serve it) and as files under the kubelet's pod log dir.
func testLogs(t *testing.T, e *env) {
	name := "logs"
	w := e.apply(t, name, e.manifest(t, name, podSpec("Always",
		"  containers:\n",
		ctr("talker", "echo line-1; echo line-2 >&2; echo line-3; "+idle),
	)))
	p := e.waitRunning(t, name, w)
	// stdout and stderr reach the runtime through two pipes: the order of
	// lines across the two streams is not kept, within one it is.
	want := "line-1\nline-3\n"
	podName := name + "-" + NodeName
	harness.Eventually(t, "/containerLogs on the kubelet's port 10250", 30*time.Second, func() error {
		body, code, err := secureGet("/containerLogs/" + Namespace + "/" + podName + "/talker")
		if err != nil {
			return err
		}
		var out []string
		for _, l := range strings.Split(body, "\n") {
			if l != "line-2" {
				out = append(out, l)
			}
		}
		if code != 200 || strings.Join(out, "\n") != want || !strings.Contains(body, "line-2\n") {
			return fmt.Errorf("HTTP %d: %q", code, body)
		}
		return nil
	})
	if _, code, err := httpGet(readOnlyURL + "/containerLogs/" + Namespace + "/" + podName + "/talker"); err == nil {
		t.Logf("read-only port /containerLogs: HTTP %d (served on 10250 only)", code)
	}
	logPath := e.inspect(t, p.Container("talker").CRIID()).Status.LogPath
	t.Logf("log file: %s", logPath)
	// The kubelet's sandbox LogDirectory: kubelet v1.37.2 sends
	// /var/log/pods/<ns>_<pod>_<uid> whatever podLogsRootDirectory says.
	dir := Namespace + "_" + podName + "_" + p.Metadata.UID + "/talker/"
	if !strings.HasPrefix(logPath, filepath.Join(e.PodLogs, dir)) && !strings.HasPrefix(logPath, filepath.Join("/var/log/pods", dir)) {
		t.Errorf("log file %s is not in the pod's log dir %s under /var/log/pods or %s", logPath, dir, e.PodLogs)
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatalf("pod log file: %v", err)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		f := strings.SplitN(l, " ", 4)
		if len(f) != 4 {
			t.Fatalf("log line %q is not CRI format (time stream tag text)", l)
		}
		if _, err := time.Parse(time.RFC3339Nano, f[0]); err != nil || f[2] != "F" {
			t.Errorf("log line %q: time %v, tag %q", l, err, f[2])
		}
		got = append(got, f[1]+":"+f[3])
	}
	sort.Strings(got)
	if strings.Join(got, ",") != "stderr:line-2,stdout:line-1,stdout:line-3" {
		t.Errorf("%s holds %v", logPath, got)
	}
}

// Termination messages reach the pod status: from terminationMessagePath,
// and from the log's tail under FallbackToLogsOnError.
func testTerminationMessage(t *testing.T, e *env) {
	name := "last-words"
	e.apply(t, name, e.manifest(t, name, podSpec("Never",
		"  containers:\n",
		ctr("file-msg", "printf 'bye from the termination file' > /dev/termination-log; exit 0"),
		ctr("log-msg", "echo last words from the log; exit 2", "terminationMessagePolicy: FallbackToLogsOnError"),
	)))
	p := e.waitPod(t, name, "both containers terminated", 2*time.Minute, func(p *Pod) error {
		for _, n := range []string{"file-msg", "log-msg"} {
			if c := p.Container(n); c == nil || c.State.Terminated == nil {
				return harness.ErrNotYet
			}
		}
		return nil
	})
	if m := p.Container("file-msg").State.Terminated; m.Message != "bye from the termination file" || m.ExitCode != 0 {
		t.Errorf("file-msg terminated %+v, want the file's message", m)
	}
	if m := p.Container("log-msg").State.Terminated; m.Message != "last words from the log\n" || m.ExitCode != 2 {
		t.Errorf("log-msg terminated %+v, want the log's last line", m)
	}
	if p.Status.Phase != "Failed" {
		e.waitPod(t, name, "phase Failed", time.Minute, func(p *Pod) error {
			if p.Status.Phase != "Failed" {
				return harness.ErrNotYet
			}
			return nil
		})
	}
}

// Deleting the manifest stops the pod at once; the kubelet's garbage
// collector (every minute) then removes its containers and sandbox.
func testDeleteManifest(t *testing.T, e *env) {
	name := "deleted"
	w := e.apply(t, name, e.manifest(t, name, podSpec("Always",
		"  containers:\n",
		ctr("app", idle),
	)))
	p := e.waitRunning(t, name, w)
	id := p.Container("app").CRIID()
	sbs := e.sandboxes(t, name)
	if len(sbs) != 1 {
		t.Fatalf("sandboxes %+v, want one", sbs)
	}
	deleted := time.Now()
	e.deleteManifest(t, name)
	e.waitGone(t, name)
	t.Logf("manifest deleted → pod stopped: %.2fs", time.Since(deleted).Seconds())
	if st := e.inspect(t, id).Status.State; st != "CONTAINER_EXITED" {
		t.Errorf("app container %s after the pod stopped, want CONTAINER_EXITED", st)
	}
	harness.Eventually(t, "the kubelet's garbage collector removes the sandbox", 3*time.Minute, func() error {
		if st := e.sandboxState(t, sbs[0].ID); st != "" {
			return fmt.Errorf("sandbox %s: %w", st, harness.ErrNotYet)
		}
		return nil
	})
	t.Logf("manifest deleted → sandbox removed: %.1fs", time.Since(deleted).Seconds())
	if _, err := e.D.CrictlErr("inspect", id); err == nil {
		t.Errorf("container %s still there after its sandbox was removed", id)
	}
}

// ---- helpers of the scenarios ----

// waitLog waits until the container's log (crictl logs) is exactly want.
func (e *env) waitLog(t *testing.T, id, want string) {
	t.Helper()
	harness.Eventually(t, "log of "+id, 30*time.Second, func() error {
		out, err := e.D.CrictlErr("logs", id)
		if err != nil {
			return err
		}
		if out != want {
			return fmt.Errorf("log %q, want %q", out, want)
		}
		return nil
	})
}

// sandboxState is the sandbox's state, "" once it is removed.
func (e *env) sandboxState(t *testing.T, id string) string {
	t.Helper()
	var out struct {
		Items []sandbox `json:"items"`
	}
	e.crictlJSON(t, &out, "pods", "-o", "json", "--id", id)
	for _, s := range out.Items {
		if s.ID == id {
			return s.State
		}
	}
	return ""
}

// runcPid is the pid of a container (a sandbox's pause too) runc runs.
func (e *env) runcPid(t *testing.T, id string) int {
	t.Helper()
	c, err := e.D.RuncState(id)
	if err != nil {
		t.Fatal(err)
	}
	if c.Pid <= 0 || c.Status != "running" {
		t.Fatalf("%s under runc root %s: %+v, want running", id, e.D.RuncRoot(), c)
	}
	return c.Pid
}

func httpGet(url string) (string, int, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, err
}
