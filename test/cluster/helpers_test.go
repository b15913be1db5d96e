package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var errNotYet = errors.New("not yet")

// kubectl runs kubectl and returns its stdout; it fails the test on error.
func kubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := kubectlErr(nil, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// kubectlErr runs kubectl with stdin (may be nil); the error carries stderr.
func kubectlErr(stdin io.Reader, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectlB, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// apply creates the objects in manifest (YAML, may be several documents).
func apply(t testing.TB, manifest string) {
	t.Helper()
	if out, err := kubectlErr(strings.NewReader(manifest), "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s\n%s", err, out, manifest)
	}
}

// namespace makes a namespace for one check and deletes it (without
// waiting) when the check ends.
func namespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := prefix + "-" + randHex(3)
	kubectl(t, "create", "namespace", ns)
	// Pods may be created before the default service account exists.
	eventually(t, time.Minute, "default service account in "+ns, func() error {
		_, err := kubectlErr(nil, "-n", ns, "get", "serviceaccount", "default")
		return err
	})
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := kubectlErr(nil, "-n", ns, "get", "pods,events", "-o", "wide")
			t.Logf("namespace %s at failure:\n%s", ns, out)
		}
		kubectlErr(nil, "delete", "namespace", ns, "--wait=false")
	})
	return ns
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// eventually polls cond until it returns nil or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// jsonpath returns one field of an object.
func jsonpath(t testing.TB, ns, obj, path string) string {
	t.Helper()
	return kubectl(t, "-n", ns, "get", obj, "-o", "jsonpath="+path)
}

// podObject is what the checks read of a pod.
type podObject struct {
	Metadata struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	} `json:"metadata"`
	Spec struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		Phase                 string            `json:"phase"`
		PodIP                 string            `json:"podIP"`
		Conditions            []condition       `json:"conditions"`
		ContainerStatuses     []containerStatus `json:"containerStatuses"`
		InitContainerStatuses []containerStatus `json:"initContainerStatuses"`
	} `json:"status"`
}

type condition struct {
	Type   string `json:"type"`
	Status string `json:"status"`
	Reason string `json:"reason"`
}

type containerState struct {
	Waiting *struct {
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"waiting"`
	Running *struct {
		StartedAt string `json:"startedAt"`
	} `json:"running"`
	Terminated *struct {
		ExitCode int    `json:"exitCode"`
		Reason   string `json:"reason"`
	} `json:"terminated"`
}

type containerStatus struct {
	Name         string         `json:"name"`
	Ready        bool           `json:"ready"`
	RestartCount int            `json:"restartCount"`
	ContainerID  string         `json:"containerID"`
	State        containerState `json:"state"`
	LastState    containerState `json:"lastState"`
}

func getPod(t testing.TB, ns, name string) (*podObject, error) {
	out, err := kubectlErr(nil, "-n", ns, "get", "pod", name, "-o", "json")
	if err != nil {
		return nil, err
	}
	var p podObject
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		return nil, err
	}
	return &p, nil
}

func podReady(p *podObject) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// waitPodReady waits until the pod is Running and Ready.
func waitPodReady(t testing.TB, ns, name string, timeout time.Duration) *podObject {
	t.Helper()
	var pod *podObject
	eventually(t, timeout, "pod "+ns+"/"+name+" Ready", func() error {
		p, err := getPod(t, ns, name)
		if err != nil {
			return err
		}
		if p.Status.Phase != "Running" || !podReady(p) {
			return fmt.Errorf("%w: phase %s", errNotYet, p.Status.Phase)
		}
		pod = p
		return nil
	})
	return pod
}

// waitPodPhase waits until the pod reaches phase.
func waitPodPhase(t testing.TB, ns, name, phase string, timeout time.Duration) *podObject {
	t.Helper()
	var pod *podObject
	eventually(t, timeout, "pod "+ns+"/"+name+" "+phase, func() error {
		p, err := getPod(t, ns, name)
		if err != nil {
			return err
		}
		if p.Status.Phase != phase {
			return fmt.Errorf("%w: phase %s", errNotYet, p.Status.Phase)
		}
		pod = p
		return nil
	})
	return pod
}

// podYAML is a one-container pod of the test image running sh -c script.
func podYAML(ns, name, script string, extra string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
  labels: {app: %s}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: %s
    imagePullPolicy: Never
    command: ["sh", "-c", %q]
%s`, name, ns, name, webImage1, script, extra)
}

// leftovers lists what hack/cluster.sh down should have removed and did not.
func leftovers() []string {
	var left []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, stateDir+"/") || strings.Contains(cmd, "/var/lib/pod-shim-cluster") ||
			strings.Contains(cmd, "/kube/v1.37.2/kubelet ") && strings.Contains(cmd, "bootstrap-kubelet.conf") {
			left = append(left, "process "+filepath.Base(filepath.Dir(p))+": "+cmd)
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (strings.HasPrefix(f[4], "/var/lib/kubelet") || strings.HasPrefix(f[4], stateDir) ||
			strings.HasPrefix(f[4], "/var/lib/pod-shim-cluster")) {
			left = append(left, "mount "+f[4])
		}
	}
	for _, link := range []string{"psc0", "psc-node0"} {
		if _, err := os.Stat("/sys/class/net/" + link); err == nil {
			left = append(left, "link "+link)
		}
	}
	for _, ipt := range []string{"iptables-save", "ip6tables-save"} {
		out, _ := exec.Command(ipt).Output()
		if m := regexp.MustCompile(`(?m)^:KUBE-\S+`).FindAllString(string(out), -1); len(m) > 0 {
			left = append(left, ipt+": chains "+strings.Join(m, " "))
		}
	}
	cg, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	for _, c := range cg {
		left = append(left, "cgroup "+c)
	}
	for _, d := range []string{"/etc/kubernetes/manifests", "/var/lib/kubelet", "/var/lib/etcd", stateDir, "/var/lib/pod-shim-cluster"} {
		if _, err := os.Stat(d); err == nil {
			left = append(left, "dir "+d)
		}
	}
	return left
}
