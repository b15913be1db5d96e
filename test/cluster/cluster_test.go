package cluster

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pod-shim/pod-shim/test/images"
)

// The test images: busybox with a page that says which version it is, so a
// rolling update is visible from a client. Loaded with kind's path (the ctr
// stand-in) and used with imagePullPolicy: Never.
const (
	webImage1 = "localhost/pod-shim-cluster/web:1"
	webImage2 = "localhost/pod-shim-cluster/web:2"
	kindImage = "localhost/pod-shim-cluster/kind-load:1"
)

// TestCluster runs the checks in an order that keeps the restart check's
// view of the control plane clean: images, then pod-shim's restart (alone),
// then every workload check in parallel, then the logs of it all.
func TestCluster(t *testing.T) {
	needCluster(t)
	node = strings.TrimSpace(kubectl(t, "get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"))
	t.Run("KindLoad", testKindLoad)
	if t.Failed() {
		t.FailNow()
	}
	t.Run("RuntimeRestart", testRuntimeRestart)
	t.Run("Workloads", func(t *testing.T) {
		t.Run("Deployment", testDeployment)
		t.Run("Service", testService)
		t.Run("ExecTTYResize", testExecTTY)
		t.Run("ExecStdin", testExecStdin)
		t.Run("Attach", testAttach)
		t.Run("LogsFollowRotation", testLogsRotation)
		t.Run("LogsPrevious", testLogsPrevious)
		t.Run("PortForward", testPortForward)
		t.Run("Copy", testCopy)
		t.Run("Job", testJob)
		t.Run("InitAndSidecar", testInitSidecar)
		t.Run("CrashLoopBackOff", testCrashLoop)
		t.Run("OOMKilled", testOOMKilled)
		t.Run("DeleteGracePreStop", testDeleteGrace)
		t.Run("StatsSummary", testStatsSummary)
	})
	t.Run("Logs", testLogs)
}

var node string

func busyboxBinary() string {
	// test/conformance/build-busybox.sh's full build when it is cached
	// (Debian's busybox-static lacks applets and its wget segfaults).
	if p := filepath.Join(cacheDir(), "busybox/busybox"); fileExists(p) {
		return p
	}
	return "/bin/busybox"
}

func cacheDir() string {
	if c := os.Getenv("POD_SHIM_CACHE"); c != "" {
		return c
	}
	return "/var/cache/pod-shim-ci"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func webImage(version string) (v1.Image, error) {
	base, err := images.Busybox()
	if err != nil {
		return nil, err
	}
	layer, err := images.Layer([]images.File{{Name: "var/www/index.html", Mode: 0o644, Data: []byte("web " + version + "\n")}})
	if err != nil {
		return nil, err
	}
	layers, err := base.Layers()
	if err != nil {
		return nil, err
	}
	return images.Image(append(layers, layer), v1.Config{Cmd: []string{"sh"}, Env: []string{images.DefaultPath}})
}

// testKindLoad loads the test images the way `kind load image-archive`
// does: kind's exact ctr command line, the archive on stdin, through
// deploy/kind's ctr stand-in; then a pod runs one with imagePullPolicy: Never.
func testKindLoad(t *testing.T) {
	images.BusyboxPath = busyboxBinary()
	set := map[string]v1.Image{}
	for tag, v := range map[string]string{webImage1: "1", webImage2: "2", kindImage: "kind"} {
		img, err := webImage(v)
		if err != nil {
			t.Fatal(err)
		}
		set[tag] = img
	}
	archive := filepath.Join(t.TempDir(), "images.tar")
	if err := images.WriteArchives(archive, set); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	podShim := filepath.Join(binDir(), "pod-shim")
	// kind v0.33 pkg/cluster/nodeutils: LoadImageArchive.
	cmd := exec.Command("sh", filepath.Join(repo, "deploy/kind/ctr"), "--namespace=k8s.io", "images", "import",
		"--all-platforms", "--digests", "--snapshotter=overlayfs", "-")
	cmd.Env = append(os.Environ(), "POD_SHIM="+podShim, "POD_SHIM_STATE="+stateDir)
	cmd.Stdin = f
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ctr stand-in import: %v\n%s", err, out)
	}
	for tag := range set {
		if !strings.Contains(string(out), tag) {
			t.Errorf("import output lacks %s:\n%s", tag, out)
		}
	}

	ns := namespace(t, "kind")
	apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: loaded, namespace: %s}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: %s
    imagePullPolicy: Never
    command: ["cat", "/var/www/index.html"]
`, ns, kindImage))
	waitPodPhase(t, ns, "loaded", "Succeeded", 2*time.Minute)
	if got := kubectl(t, "-n", ns, "logs", "loaded"); got != "web kind\n" {
		t.Errorf("logs of the kind-loaded image: %q", got)
	}
}

func binDir() string {
	if d := os.Getenv("POD_SHIM_BIN_DIR"); d != "" {
		return d
	}
	return filepath.Join(repo, "bin")
}

// controlPlane returns, per static control-plane pod, its containers' IDs
// and restart counts.
func controlPlane(t *testing.T) map[string]string {
	t.Helper()
	out := kubectl(t, "-n", "kube-system", "get", "pods", "-o",
		`jsonpath={range .items[*]}{.metadata.name}{" "}{range .status.containerStatuses[*]}{.containerID}{"/"}{.restartCount}{"/"}{.ready}{end}{"\n"}{end}`)
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			m[f[0]] = f[1]
		}
	}
	return m
}

// testRuntimeRestart stops pod-shim with SIGTERM and starts it again, then
// kills it with SIGKILL and starts it again; the control plane keeps
// running through both with no container restarted or replaced.
func testRuntimeRestart(t *testing.T) {
	// The node is Ready before every static pod is: etcd has no readiness
	// probe, so it is ready when its startup probe first passes (10 s
	// initial delay, then every 10 s). Wait for that; a restart is a failure
	// at once.
	var before map[string]string
	eventually(t, 2*time.Minute, "the control plane Ready with no restart", func() error {
		before = controlPlane(t)
		for _, want := range []string{"etcd-", "kube-apiserver-", "kube-controller-manager-", "kube-scheduler-", "kube-proxy-", "coredns-"} {
			found := false
			for name, st := range before {
				if !strings.HasPrefix(name, want) {
					continue
				}
				found = true
				f := strings.Split(st, "/")
				if n := len(f); n < 3 || f[n-2] != "0" {
					t.Fatalf("%s before the restart: %s (want restartCount 0)", name, st)
				}
				if !strings.HasSuffix(st, "/0/true") {
					return fmt.Errorf("%w: %s not ready: %s", errNotYet, name, st)
				}
			}
			if !found {
				return fmt.Errorf("%w: no %s pod in kube-system: %v", errNotYet, want, before)
			}
		}
		return nil
	})
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		restartPodShim(t, sig)
		// The kubelet notices a runtime that went away through PLEG and
		// its status checks; give both a chance to run against the new
		// daemon, then check that nothing was restarted.
		eventually(t, 2*time.Minute, "API server answers after pod-shim "+sig.String(), func() error {
			_, err := kubectlErr(nil, "get", "--raw", "/readyz")
			return err
		})
		eventually(t, time.Minute, "the kubelet's runtime status after "+sig.String(), func() error {
			out, err := kubectlErr(nil, "get", "node", node, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
			if err != nil || out != "True" {
				return fmt.Errorf("%w: Ready=%q %v", errNotYet, out, err)
			}
			return nil
		})
		// A fresh pod proves the restarted daemon serves the kubelet.
		ns := namespace(t, "restart")
		apply(t, podYAML(ns, "after", "echo up; sleep 3600", ""))
		waitPodReady(t, ns, "after", 2*time.Minute)
		after := controlPlane(t)
		for name, st := range before {
			if after[name] != st {
				t.Errorf("after pod-shim %s: %s was %s, now %q", sig, name, st, after[name])
			}
		}
	}
}

// restartPodShim signals the daemon hack/cluster.sh started and starts it
// again the same way (same config, same log).
func restartPodShim(t *testing.T, sig syscall.Signal) {
	t.Helper()
	pidFile := "/var/lib/pod-shim-cluster/pod-shim.pid"
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatalf("pod-shim (pid %d) is not running: %v", pid, err)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "pod-shim to exit", func() error {
		if err := syscall.Kill(pid, 0); err == nil {
			// A zombie until its parent (gone: reparented to init) reaps it.
			st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if !bytes.Contains(st, []byte(") Z ")) {
				return errNotYet
			}
		}
		return nil
	})
	logf, err := os.OpenFile("/var/log/pod-shim-cluster/pod-shim.log", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = strings.Split(strings.TrimRight(string(env), "\x00"), "\x00")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Not waited for: it outlives the test, hack/cluster.sh down stops it.
	go cmd.Wait()
	eventually(t, time.Minute, "pod-shim's socket after restart", func() error {
		c, err := net.Dial("unix", stateDir+"/pod-shim.sock")
		if err != nil {
			return err
		}
		return c.Close()
	})
}

func testDeployment(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "deploy")
	apply(t, deploymentYAML(ns, "web", webImage1, 3))
	waitAvailable(t, ns, "web", 3)
	kubectl(t, "-n", ns, "scale", "deployment/web", "--replicas=10")
	waitAvailable(t, ns, "web", 10)
	kubectl(t, "-n", ns, "scale", "deployment/web", "--replicas=1")
	waitAvailable(t, ns, "web", 1)
	eventually(t, 2*time.Minute, "scale down to 1 pod", func() error {
		out, err := kubectlErr(nil, "-n", ns, "get", "pods", "-l", "app=web", "-o", "name")
		if err != nil {
			return err
		}
		if n := len(strings.Fields(out)); n != 1 {
			return fmt.Errorf("%w: %d pods", errNotYet, n)
		}
		return nil
	})
	kubectl(t, "-n", ns, "set", "image", "deployment/web", "web="+webImage2)
	if out, err := kubectlErr(nil, "-n", ns, "rollout", "status", "deployment/web", "--timeout=3m"); err != nil {
		t.Fatalf("rollout: %v\n%s", err, out)
	}
	// The old pod may still be terminating: wait for the one that is left.
	var pod string
	eventually(t, 2*time.Minute, "one pod after the rolling update", func() error {
		out, err := kubectlErr(nil, "-n", ns, "get", "pods", "-l", "app=web", "-o", "name")
		if err != nil {
			return err
		}
		if f := strings.Fields(out); len(f) != 1 {
			return fmt.Errorf("%w: %v", errNotYet, f)
		}
		pod = strings.TrimPrefix(strings.TrimSpace(out), "pod/")
		return nil
	})
	if got := kubectl(t, "-n", ns, "exec", pod, "--", "cat", "/var/www/index.html"); got != "web 2\n" {
		t.Errorf("after the rolling update the pod serves %q", got)
	}
	if got := jsonpath(t, ns, "pod/"+pod, "{.spec.containers[0].image}"); got != webImage2 {
		t.Errorf("pod left after the rolling update runs %s", got)
	}
}

func deploymentYAML(ns, name, image string, replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  replicas: %[4]d
  selector: {matchLabels: {app: %[1]s}}
  strategy: {rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: %[3]s
        imagePullPolicy: Never
        command: ["httpd", "-f", "-p", "8080", "-h", "/var/www"]
        ports: [{containerPort: 8080}]
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 1
`, name, ns, image, replicas)
}

func waitAvailable(t *testing.T, ns, name string, n int) {
	t.Helper()
	eventually(t, 3*time.Minute, fmt.Sprintf("deployment %s/%s with %d available", ns, name, n), func() error {
		out, err := kubectlErr(nil, "-n", ns, "get", "deployment", name, "-o",
			"jsonpath={.status.availableReplicas}/{.status.replicas}/{.status.updatedReplicas}")
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("%d/%d/%d", n, n, n); out != want {
			return fmt.Errorf("%w: available/replicas/updated %s, want %s", errNotYet, out, want)
		}
		return nil
	})
}

// testService reaches a ClusterIP Service from another pod by its DNS name
// (CoreDNS) and by its IP (kube-proxy's rules), and a NodePort from the host.
func testService(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "svc")
	apply(t, deploymentYAML(ns, "web", webImage1, 2)+fmt.Sprintf(`---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: %s}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np, namespace: %s}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`, ns, ns))
	apply(t, podYAML(ns, "client", "sleep 3600", ""))
	waitAvailable(t, ns, "web", 2)
	waitPodReady(t, ns, "client", 2*time.Minute)
	clusterIP := jsonpath(t, ns, "service/web", "{.spec.clusterIP}")
	get := func(host string) func() error {
		return func() error {
			out, err := kubectlErr(nil, "-n", ns, "exec", "client", "--", "sh", "-c",
				fmt.Sprintf(`printf 'GET /index.html HTTP/1.0\r\n\r\n' | nc -w 5 %s 80`, host))
			if err != nil {
				return err
			}
			if !strings.Contains(out, "web 1") {
				return fmt.Errorf("%w: %q", errNotYet, out)
			}
			return nil
		}
	}
	name := "web." + ns + ".svc.cluster.local"
	eventually(t, time.Minute, "the Service by DNS name "+name, get(name))
	eventually(t, time.Minute, "the Service by ClusterIP "+clusterIP, get(clusterIP))
	// The search path from the pod's resolv.conf (ClusterFirst) works too.
	eventually(t, time.Minute, "the Service by short name", get("web"))
	if out := kubectl(t, "-n", ns, "exec", "client", "--", "nslookup", name); !strings.Contains(out, clusterIP) {
		t.Errorf("nslookup %s does not give %s:\n%s", name, clusterIP, out)
	}

	port := jsonpath(t, ns, "service/web-np", "{.spec.ports[0].nodePort}")
	url := "http://" + nodeIP + ":" + port + "/index.html"
	eventually(t, time.Minute, "the NodePort "+url+" from the host", func() error {
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "web 1\n" {
			return fmt.Errorf("%w: %q", errNotYet, b)
		}
		return nil
	})
}

// testExecTTY runs kubectl exec -it on a pseudo-terminal, resizes it and
// checks the container's terminal sees the new size.
func testExecTTY(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "tty")
	apply(t, podYAML(ns, "tty", "sleep 3600", ""))
	waitPodReady(t, ns, "tty", 2*time.Minute)
	cmd := exec.Command(kubectlB, "-n", ns, "exec", "-it", "tty", "--", "sh")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "TERM=dumb")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ptmx.Close(); cmd.Process.Kill(); cmd.Wait() }()
	var mu sync.Mutex
	var buf bytes.Buffer
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := ptmx.Read(b)
			mu.Lock()
			buf.Write(b[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	seen := func(re *regexp.Regexp) func() error {
		return func() error {
			mu.Lock()
			defer mu.Unlock()
			if !re.Match(buf.Bytes()) {
				return fmt.Errorf("%w: %q", errNotYet, buf.String())
			}
			return nil
		}
	}
	io.WriteString(ptmx, "stty size; echo tty-$((6*7))\r")
	eventually(t, time.Minute, "the first stty size", seen(regexp.MustCompile(`24 80\s+tty-42`)))
	// kubectl forwards SIGWINCH as a resize event on the exec stream.
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 50, Cols: 132}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the resized terminal", func() error {
		io.WriteString(ptmx, "stty size\r")
		time.Sleep(300 * time.Millisecond)
		return seen(regexp.MustCompile(`50 132`))()
	})
	io.WriteString(ptmx, "exit 3\r")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errorsAs(err, &ee) || ee.ExitCode() != 3 {
			t.Errorf("kubectl exec -it exit: %v, want status 3", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("kubectl exec -it did not end after exit")
	}
}

func testExecStdin(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "stdin")
	apply(t, podYAML(ns, "stdin", "sleep 3600", ""))
	waitPodReady(t, ns, "stdin", 2*time.Minute)
	data := bytes.Repeat([]byte("pod-shim stdin 0123456789\n"), 200000) // ~5 MB
	sum := sha256.Sum256(data)
	out, err := kubectlErr(bytes.NewReader(data), "-n", ns, "exec", "-i", "stdin", "--", "sh", "-c", "sha256sum | cut -d' ' -f1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != hex.EncodeToString(sum[:]) {
		t.Errorf("sha256 of stdin in the container %q, want %x", out, sum)
	}
}

// testAttach attaches to a container whose main process reads stdin.
func testAttach(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "attach")
	apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: attach, namespace: %s}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    imagePullPolicy: Never
    command: ["sh", "-c", "while read l; do echo got-$l; done"]
    stdin: true
`, ns, webImage1))
	waitPodReady(t, ns, "attach", 2*time.Minute)
	cmd := exec.Command(kubectlB, "-n", ns, "attach", "-i", "attach", "-c", "main")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	in, _ := cmd.StdinPipe()
	outp, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		s := bufio.NewScanner(outp)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	// The attach stream may be set up after the first write: repeat until
	// an answer comes back.
	deadline := time.After(time.Minute)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 0; ; i++ {
		fmt.Fprintf(in, "ping%d\n", i)
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("kubectl attach ended")
			}
			if strings.HasPrefix(l, "got-ping") {
				return
			}
			t.Fatalf("attach output %q", l)
		case <-tick.C:
		case <-deadline:
			t.Fatal("no answer through kubectl attach")
		}
	}
}

// testLogsRotation follows a container's log with kubectl logs -f while
// the kubelet rotates it (containerLogMaxSize 1Mi in hack/cluster.sh): the
// numbered lines that arrive must be in order, across the rotation.
func testLogsRotation(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "logs")
	// ~100 bytes a line, ~100 kB/s: a rotation every ~10 s.
	apply(t, podYAML(ns, "writer", `i=0; pad=$(head -c 90 /dev/zero | tr '\0' x); while true; do i=$((i+1)); echo "$i $pad"; if [ $((i % 100)) = 0 ]; then sleep 0.1; fi; done`, ""))
	pod := waitPodReady(t, ns, "writer", 2*time.Minute)
	cmd := exec.Command(kubectlB, "-n", ns, "logs", "-f", "writer")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	outp, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	logDir := fmt.Sprintf("/var/log/pods/%s_writer_%s/main", ns, pod.Metadata.UID)
	rotated := func() bool {
		m, _ := filepath.Glob(logDir + "/0.log.*")
		return len(m) > 0
	}
	s := bufio.NewScanner(outp)
	last, first := 0, 0
	deadline := time.Now().Add(3 * time.Minute)
	sawRotation := false
	after := 0
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) != 2 {
			t.Fatalf("odd log line %q", s.Text())
		}
		n, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatalf("odd log line %q", s.Text())
		}
		if first == 0 {
			first = n
		} else if n != last+1 {
			t.Fatalf("kubectl logs -f: line %d after %d (rotated: %v)", n, last, sawRotation)
		}
		last = n
		if !sawRotation && n%500 == 0 && rotated() {
			sawRotation = true
		}
		if sawRotation {
			after++
			// Lines well past a rotation: the follower reopened the new file.
			if after > 20000 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 3m: lines %d..%d, rotation seen: %v", first, last, sawRotation)
		}
	}
	t.Fatalf("kubectl logs -f ended after line %d (rotation seen: %v): %v", last, sawRotation, s.Err())
}

func testLogsPrevious(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "prev")
	// The first run exits, the second keeps running: --previous is the
	// first run's log, while the current one is live.
	apply(t, podYAML(ns, "prev", `if [ -e /state/ran ]; then echo second-run; exec sleep 3600; fi; touch /state/ran; echo bye-from-previous; exit 1`,
		"    volumeMounts: [{name: state, mountPath: /state}]\n  volumes: [{name: state, emptyDir: {}}]\n"))
	eventually(t, 2*time.Minute, "a restart", func() error {
		p, err := getPod(t, ns, "prev")
		if err != nil {
			return err
		}
		if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].RestartCount < 1 || p.Status.ContainerStatuses[0].State.Running == nil {
			return errNotYet
		}
		return nil
	})
	if out := kubectl(t, "-n", ns, "logs", "prev"); out != "second-run\n" {
		t.Errorf("logs of the running container: %q", out)
	}
	out, err := kubectlErr(nil, "-n", ns, "logs", "--previous", "prev")
	if err != nil {
		p, _ := getPod(t, ns, "prev")
		t.Fatalf("logs --previous: %v (status %+v)", err, p.Status.ContainerStatuses)
	}
	if !strings.Contains(out, "bye-from-previous") {
		t.Errorf("logs --previous: %q", out)
	}
}

// testPortForward sends many parallel connections through kubectl
// port-forward, each downloading a large file whose checksum is known.
func testPortForward(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "pf")
	apply(t, podYAML(ns, "pf", `mkdir -p /tmp/www && head -c 16777216 /dev/urandom > /tmp/www/big && sha256sum /tmp/www/big | cut -d' ' -f1 > /tmp/sum && exec httpd -f -p 8080 -h /tmp/www`,
		"    readinessProbe: {exec: {command: [test, -s, /tmp/sum]}, periodSeconds: 1}\n"))
	waitPodReady(t, ns, "pf", 2*time.Minute)
	want := strings.TrimSpace(kubectl(t, "-n", ns, "exec", "pf", "--", "cat", "/tmp/sum"))
	cmd := exec.Command(kubectlB, "-n", ns, "port-forward", "pod/pf", "--address", "127.0.0.1", ":8080")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	outp, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// "Forwarding from 127.0.0.1:PORT -> 8080"
	s := bufio.NewScanner(outp)
	var addr string
	for s.Scan() {
		if m := regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+)`).FindStringSubmatch(s.Text()); m != nil {
			addr = m[1]
			break
		}
	}
	if addr == "" {
		t.Fatal("kubectl port-forward printed no local address")
	}
	go io.Copy(io.Discard, outp)
	const conns = 8
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := http.Client{Timeout: 3 * time.Minute}
			resp, err := c.Get("http://" + addr + "/big")
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			if err != nil {
				errs <- fmt.Errorf("after %d bytes: %w", n, err)
				return
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != want || n != 16<<20 {
				errs <- fmt.Errorf("got %d bytes with sha256 %s, want %d with %s", n, got, 16<<20, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error("port-forward transfer:", err)
	}
}

func testCopy(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "cp")
	apply(t, podYAML(ns, "cp", "sleep 3600", ""))
	waitPodReady(t, ns, "cp", 2*time.Minute)
	dir := t.TempDir()
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	src := filepath.Join(dir, "up.bin")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	kubectl(t, "cp", src, ns+"/cp:/tmp/up.bin")
	out := kubectl(t, "-n", ns, "exec", "cp", "--", "sha256sum", "/tmp/up.bin")
	if !strings.HasPrefix(out, hex.EncodeToString(sum[:])) {
		t.Errorf("in the pod: %q, want %x", out, sum)
	}
	kubectl(t, "-n", ns, "exec", "cp", "--", "sh", "-c", "cp /tmp/up.bin /tmp/down.bin && echo tail >> /tmp/down.bin")
	dst := filepath.Join(dir, "down.bin")
	kubectl(t, "cp", ns+"/cp:/tmp/down.bin", dst)
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, append(data, []byte("tail\n")...)) {
		t.Errorf("copied back %d bytes, not what the pod holds", len(got))
	}
}

func testJob(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "job")
	apply(t, fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata: {name: job, namespace: %s}
spec:
  completions: 2
  parallelism: 2
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: %s
        imagePullPolicy: Never
        command: ["sh", "-c", "echo job done"]
`, ns, webImage1))
	if out, err := kubectlErr(nil, "-n", ns, "wait", "--for=condition=Complete", "job/job", "--timeout=3m"); err != nil {
		t.Fatalf("job: %v\n%s", err, out)
	}
	if got := jsonpath(t, ns, "job/job", "{.status.succeeded}"); got != "2" {
		t.Errorf("job succeeded = %s", got)
	}
}

// testInitSidecar: an init container runs first, a native sidecar (an init
// container with restartPolicy Always) keeps running beside the main
// container, and when the main container exits the pod Succeeds.
func testInitSidecar(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "sidecar")
	apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: sc, namespace: %[1]s}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  volumes: [{name: shared, emptyDir: {}}]
  initContainers:
  - name: init
    image: %[2]s
    imagePullPolicy: Never
    command: ["sh", "-c", "echo from-init > /shared/init"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  - name: sidecar
    image: %[2]s
    imagePullPolicy: Never
    restartPolicy: Always
    command: ["sh", "-c", "echo sidecar > /shared/sidecar; exec sleep 3600"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  containers:
  - name: main
    image: %[2]s
    imagePullPolicy: Never
    command: ["sh", "-c", "cat /shared/init /shared/sidecar; until [ -e /shared/go ]; do sleep 0.2; done"]
    volumeMounts: [{name: shared, mountPath: /shared}]
`, ns, webImage1))
	waitPodPhase(t, ns, "sc", "Running", 2*time.Minute)
	eventually(t, time.Minute, "main and sidecar running", func() error {
		p, err := getPod(t, ns, "sc")
		if err != nil {
			return err
		}
		running := 0
		for _, c := range append(p.Status.ContainerStatuses, p.Status.InitContainerStatuses...) {
			if c.State.Running != nil {
				running++
			}
		}
		if running != 2 {
			return fmt.Errorf("%w: %d running", errNotYet, running)
		}
		return nil
	})
	kubectl(t, "-n", ns, "exec", "sc", "-c", "main", "--", "touch", "/shared/go")
	p := waitPodPhase(t, ns, "sc", "Succeeded", 2*time.Minute)
	for _, c := range p.Status.InitContainerStatuses {
		if c.State.Terminated == nil {
			t.Errorf("init container %s not terminated after the pod Succeeded: %+v", c.Name, c.State)
		}
	}
	if got := kubectl(t, "-n", ns, "logs", "sc", "-c", "main"); got != "from-init\nsidecar\n" {
		t.Errorf("main saw %q", got)
	}
}

func testCrashLoop(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "crash")
	apply(t, podYAML(ns, "crash", "echo crashing; exit 2", ""))
	// The kubelet v1.37 requeues a pod in back-off only when the back-off
	// ends (pod_workers.go completeWork), so the Waiting/CrashLoopBackOff
	// state is published only if something else syncs the pod in between:
	// accept it or the Terminated state it replaces, and require the
	// kubelet's BackOff event, the restart count and the exit reason.
	eventually(t, 3*time.Minute, "CrashLoopBackOff with restarts", func() error {
		p, err := getPod(t, ns, "crash")
		if err != nil {
			return err
		}
		if len(p.Status.ContainerStatuses) == 0 {
			return errNotYet
		}
		c := p.Status.ContainerStatuses[0]
		if c.RestartCount < 2 {
			return fmt.Errorf("%w: restarts %d", errNotYet, c.RestartCount)
		}
		term := c.LastState.Terminated
		switch {
		case c.State.Waiting != nil && c.State.Waiting.Reason == "CrashLoopBackOff":
		case c.State.Terminated != nil:
			term = c.State.Terminated
		default:
			return fmt.Errorf("%w: state %+v", errNotYet, c.State)
		}
		if term == nil || term.ExitCode != 2 || term.Reason != "Error" {
			return fmt.Errorf("terminated %+v, want exit 2 reason Error", term)
		}
		ev, err := kubectlErr(nil, "-n", ns, "get", "events", "--field-selector", "involvedObject.name=crash,reason=BackOff", "-o", "jsonpath={.items[*].message}")
		if err != nil {
			return err
		}
		if !strings.Contains(ev, "Back-off restarting failed container main") {
			return fmt.Errorf("%w: BackOff events %q", errNotYet, ev)
		}
		return nil
	})
}

func testOOMKilled(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "oom")
	apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: oom, namespace: %s}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: %s
    imagePullPolicy: Never
    # dd's 256 MiB buffer, filled from /dev/zero, cannot fit in 32 MiB.
    command: ["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"]
    resources: {limits: {memory: 32Mi}}
`, ns, webImage1))
	p := waitPodPhase(t, ns, "oom", "Failed", 2*time.Minute)
	c := p.Status.ContainerStatuses[0]
	if c.State.Terminated == nil || c.State.Terminated.Reason != "OOMKilled" || c.State.Terminated.ExitCode != 137 {
		t.Errorf("state %+v, want terminated OOMKilled exit 137", c.State.Terminated)
	}
}

// testDeleteGrace deletes a pod whose container ignores SIGTERM: the
// preStop hook runs first, and the container is killed only when the grace
// period is over.
func testDeleteGrace(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "grace")
	dir, err := os.MkdirTemp("", "cluster-grace-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	const grace = 6
	apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: grace, namespace: %s}
spec:
  terminationGracePeriodSeconds: %d
  volumes: [{name: out, hostPath: {path: %s}}]
  containers:
  - name: main
    image: %s
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'echo TERM >> /out/events' TERM; while true; do sleep 0.2; done"]
    volumeMounts: [{name: out, mountPath: /out}]
    lifecycle:
      preStop:
        exec: {command: ["sh", "-c", "echo preStop >> /out/events"]}
`, ns, grace, dir, webImage1))
	waitPodReady(t, ns, "grace", 2*time.Minute)
	start := time.Now()
	if out, err := kubectlErr(nil, "-n", ns, "delete", "pod", "grace", "--wait=true", "--timeout=2m"); err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	took := time.Since(start)
	events, _ := os.ReadFile(filepath.Join(dir, "events"))
	if !strings.HasPrefix(string(events), "preStop\n") || !strings.Contains(string(events), "TERM") {
		t.Errorf("events in the container: %q, want preStop then TERM", events)
	}
	// The kubelet counts the grace period from the start of the kill,
	// preStop included; SIGKILL follows when it is over.
	if took < grace*time.Second || took > (grace+30)*time.Second {
		t.Errorf("delete took %s with a %ds grace period for a container ignoring SIGTERM", took, grace)
	}
}

// testStatsSummary reads the kubelet's summary API through the API
// server's node proxy: what `kubectl top` is built on, from pod-shim's CRI
// stats.
func testStatsSummary(t *testing.T) {
	t.Parallel()
	ns := namespace(t, "stats")
	apply(t, podYAML(ns, "busy", "head -c 1000000 /dev/zero > /tmp/f; while true; do i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; sleep 0.5; done", ""))
	waitPodReady(t, ns, "busy", 2*time.Minute)
	type usage struct {
		CPU *struct {
			UsageNanoCores       *uint64 `json:"usageNanoCores"`
			UsageCoreNanoSeconds *uint64 `json:"usageCoreNanoSeconds"`
		} `json:"cpu"`
		Memory *struct {
			WorkingSetBytes *uint64 `json:"workingSetBytes"`
			UsageBytes      *uint64 `json:"usageBytes"`
		} `json:"memory"`
	}
	type fsStats struct {
		UsedBytes *uint64 `json:"usedBytes"`
	}
	var summary struct {
		Pods []struct {
			PodRef struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"podRef"`
			usage
			Network *struct {
				RxBytes *uint64 `json:"rxBytes"`
				TxBytes *uint64 `json:"txBytes"`
			} `json:"network"`
			EphemeralStorage *fsStats `json:"ephemeral-storage"`
			Containers       []struct {
				Name string `json:"name"`
				usage
				Rootfs *fsStats `json:"rootfs"`
				Logs   *fsStats `json:"logs"`
			} `json:"containers"`
		} `json:"pods"`
	}
	eventually(t, 2*time.Minute, "complete stats for the pod in /stats/summary", func() error {
		out, err := kubectlErr(nil, "get", "--raw", "/api/v1/nodes/"+node+"/proxy/stats/summary")
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(out), &summary); err != nil {
			return err
		}
		for _, p := range summary.Pods {
			if p.PodRef.Namespace != ns || p.PodRef.Name != "busy" {
				continue
			}
			var missing []string
			if p.CPU == nil || p.CPU.UsageNanoCores == nil || p.CPU.UsageCoreNanoSeconds == nil || *p.CPU.UsageCoreNanoSeconds == 0 {
				missing = append(missing, "pod cpu")
			}
			if p.Memory == nil || p.Memory.WorkingSetBytes == nil || *p.Memory.WorkingSetBytes == 0 {
				missing = append(missing, "pod memory")
			}
			if statsFromCRI() && (p.Network == nil || p.Network.RxBytes == nil || p.Network.TxBytes == nil) {
				missing = append(missing, "pod network")
			}
			if p.EphemeralStorage == nil || p.EphemeralStorage.UsedBytes == nil || *p.EphemeralStorage.UsedBytes == 0 {
				missing = append(missing, "pod ephemeral-storage")
			}
			if len(p.Containers) != 1 {
				missing = append(missing, fmt.Sprintf("containers (%d)", len(p.Containers)))
			} else {
				c := p.Containers[0]
				if c.CPU == nil || c.CPU.UsageNanoCores == nil || c.CPU.UsageCoreNanoSeconds == nil {
					missing = append(missing, "container cpu")
				}
				if c.Memory == nil || c.Memory.WorkingSetBytes == nil || *c.Memory.WorkingSetBytes == 0 {
					missing = append(missing, "container memory")
				}
				if c.Rootfs == nil || c.Rootfs.UsedBytes == nil || *c.Rootfs.UsedBytes < 1000000 {
					missing = append(missing, "container rootfs (>= the 1 MB written)")
				}
				if c.Logs == nil || c.Logs.UsedBytes == nil {
					missing = append(missing, "container logs")
				}
			}
			if len(missing) > 0 {
				b, _ := json.Marshal(p)
				return fmt.Errorf("%w: missing %s in %s", errNotYet, strings.Join(missing, ", "), b)
			}
			return nil
		}
		return fmt.Errorf("%w: pod not in the summary", errNotYet)
	})
}

// statsFromCRI says whether the kubelet takes pod stats from pod-shim's CRI
// stats (hack/cluster.sh does unless CLUSTER_STATS_FROM_CRI=0). Without it the
// kubelet asks cadvisor, which has no pod network stats for runtimes other
// than containerd and CRI-O, so the network part is checked only with it.
func statsFromCRI() bool {
	b, _ := os.ReadFile("/var/lib/kubelet/config.yaml")
	return regexp.MustCompile(`PodAndContainerStatsFromCRI: true`).Match(b)
}

func errorsAs(err error, target any) bool {
	if err == nil {
		return false
	}
	ee, ok := err.(*exec.ExitError)
	if !ok {
		return false
	}
	*(target.(**exec.ExitError)) = ee
	return true
}
