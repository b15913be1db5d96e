package cluster

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// runtimeError picks the kubelet log lines that would be pod-shim's fault:
// failed CRI calls, unimplemented calls, failed stats and streaming.
var runtimeError = regexp.MustCompile(`Unimplemented|rpc error|ImageFsInfo|RuntimeConfig|ListContainerStats|ListPodSandboxStats|ContainerStats|PodSandboxStats|runtime service failed|image service failed|streaming|port-forward|portforward|attach|exec|CreateContainerConfigError`)

// benign are runtime-related error lines the kubelet logs for reasons other
// than the runtime, each with why (the first ones as in test/kubelet).
var benign = []struct {
	re  *regexp.Regexp
	why string
}{
	{regexp.MustCompile(`"ContainerStatus from runtime service failed" err="rpc error: code = NotFound`),
		"the kubelet's pod_container_deletor and GC ask for the status of containers that are already removed; NotFound is the CRI answer (containerd logs the same)"},
	{regexp.MustCompile(`"DeleteContainer returned error" .*rpc error: code = NotFound`),
		"same: pod_container_deletor removing a container that is already gone"},
	{regexp.MustCompile(`"failed to remove pod init container .*rpc error: code = NotFound`),
		"same: the kubelet pruning an old init container attempt that is already gone"},
	{regexp.MustCompile(`"Failed to remove container" err="failed to get container status \\"[0-9a-f]+\\": rpc error: code = NotFound`),
		"same, from the kubelet's container GC (kuberuntime_gc.go) racing pod_container_deletor for the same dead container"},
	{regexp.MustCompile(`"Error getting ContainerStatus for containerID" .*rpc error: code = NotFound`),
		"same, from the kubelet's container GC"},
	{regexp.MustCompile(`"ExecSync cmd from runtime service failed" err="rpc error: code = FailedPrecondition desc = container \S+ is exited`),
		"a probe racing its container's death: exec in an exited container is refused, as containerd does"},
	{regexp.MustCompile(`rpc error: code = Unavailable desc = (connection error|error reading from server: EOF)`),
		"the RuntimeRestart check stops pod-shim on purpose (SIGTERM, then SIGKILL): the kubelet's calls in that window find no socket"},
	{regexp.MustCompile(`(?:PLEG|Container runtime not ready|Skipping pod synchronization).*(?:Unavailable|connection refused|no such file)`),
		"same window: the kubelet's runtime health checks while pod-shim is restarted on purpose"},
	{regexp.MustCompile(`"Error syncing pod, skipping" err=".*CrashLoopBackOff`),
		"the CrashLoopBackOff and LogsPrevious checks' containers exit on purpose"},
	{regexp.MustCompile(`"ContainerStatus from runtime service failed" err="rpc error: code = Canceled desc = context canceled"`),
		"the kubelet cancelled its own call (Canceled is the client's doing, not an answer from pod-shim), as test/kubelet lists for Version"},
	{regexp.MustCompile(`"failed to read memory cgroup (config|limits) for the pod" err="failed to read (memory.limit_in_bytes|CPU quota) for cgroup /sys/fs/cgroup/\w+/kubepods/`),
		"the kubelet (kubelet_pods.go convertToAPIPodLevelResourcesStatus) reads the pod cgroup it made itself while the pod is terminating and the API phase still says Running; pod-shim removes only cgroup dirs it created (pkg/sandbox/cgroup.go podCgroupDirs), never the kubelet's pod cgroup"},
	{regexp.MustCompile(`"PodSandbox from runtime service failed" err="rpc error: code = InvalidArgument desc = pod_sandbox_id is empty" podSandboxID=""`),
		"the kubelet's CRI stats provider (PodAndContainerStatsFromCRI) asked PodSandboxStats with an empty id, as the line's podSandboxID=\"\" shows, for a pod whose sandbox it has not recorded yet; an empty id is InvalidArgument"},
	{regexp.MustCompile(`"Failed to get status for pod" err="pods \\".*\\" is forbidden: User \\"system:node:.*no relationship found between node`),
		"the API server's node authorizer has not yet linked a just-created pod to this node; the API call is the kubelet status manager's, and it matched only because the pod is named attach"},
	{regexp.MustCompile(`"Unhandled Error" err="unable to upgrade connection: container not found|"Unhandled Error" err="error while (?:closing|copying)`),
		"a kubectl attach/exec stream closed by the test (it kills the client) while the container keeps running"},
}

// testLogs checks the kubelet's log for runtime-caused errors, and every
// control-plane pod for restarts (a container that failed under the
// runtime shows up there, whatever it logged).
func testLogs(t *testing.T) {
	b, err := os.ReadFile(kubeletLog)
	if err != nil {
		t.Fatal(err)
	}
	var bad, seen []string
	for _, l := range strings.Split(string(b), "\n") {
		isEW := strings.HasPrefix(l, "E") || strings.HasPrefix(l, "W")
		if !isEW {
			continue
		}
		seen = append(seen, l)
		if !runtimeError.MatchString(l) {
			continue
		}
		ok := false
		for _, b := range benign {
			if b.re.MatchString(l) {
				ok = true
				break
			}
		}
		if !ok {
			bad = append(bad, l)
		}
	}
	t.Logf("kubelet E/W lines: %d", len(seen))
	if len(bad) > 0 {
		t.Errorf("kubelet log has %d runtime error lines not known to be benign:\n%s", len(bad), strings.Join(bad, "\n"))
	}

	for name, st := range controlPlane(t) {
		if !strings.HasSuffix(st, "/0/true") {
			t.Errorf("control-plane pod %s: %s (want no restart, ready)", name, st)
		}
	}
}
