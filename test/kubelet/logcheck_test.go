package kubelet

import (
	"regexp"
	"strings"
	"testing"
)

// runtimeError picks the kubelet log lines that would be pod-shim's fault:
// unimplemented calls, failed stats/config calls, gRPC errors.
var runtimeError = regexp.MustCompile(`Unimplemented|rpc error|ImageFsInfo|RuntimeConfig|ListContainerStats|ListPodSandboxStats|ContainerStats`)

// benign are error lines the kubelet logs for reasons other than the
// runtime (each with why); everything else runtimeError matches fails.
var benign = []struct {
	re  *regexp.Regexp
	why string
}{
	{regexp.MustCompile(`"ContainerStatus from runtime service failed" err="rpc error: code = NotFound`),
		"the kubelet's pod_container_deletor and GC ask for the status of dead containers it (or its GC) already removed; NotFound is the CRI answer (containerd logs the same)"},
	{regexp.MustCompile(`"DeleteContainer returned error" .*rpc error: code = NotFound`),
		"same: pod_container_deletor removing a container that is already gone"},
	{regexp.MustCompile(`"failed to remove pod init container .*rpc error: code = NotFound`),
		"same: the kubelet pruning an old init container attempt that is already gone"},
	{regexp.MustCompile(`"Error getting ContainerStatus for containerID" .*rpc error: code = NotFound`),
		"same, from the kubelet's container GC (info level)"},
	{regexp.MustCompile(`"ExecSync cmd from runtime service failed" err="rpc error: code = FailedPrecondition desc = container \S+ is exited`),
		"a probe racing its container's death (the liveness restart in ExecProbes): exec in an exited container is refused, as containerd does"},
	{regexp.MustCompile(`"Version from runtime service failed" err="rpc error: code = Canceled desc = context canceled"`),
		"the kubelet cancelled its own Version call (code Canceled is the client's doing, not an answer from pod-shim); seen under load, not explained further"},
}

// testKubeletLog fails on any error line of the kubelet that involves the
// runtime and is not listed in benign; every E line is logged for review.
func testKubeletLog(t *testing.T, e *env) {
	var bad, seen []string
	for _, l := range strings.Split(readFile(e.Log), "\n") {
		if !strings.HasPrefix(l, "E") && !strings.HasPrefix(l, "W") && !runtimeError.MatchString(l) {
			continue
		}
		if strings.HasPrefix(l, "E") || strings.HasPrefix(l, "W") {
			seen = append(seen, l)
		}
		if !runtimeError.MatchString(l) || strings.HasPrefix(l, "I") && !strings.Contains(l, "rpc error") && !strings.Contains(l, "Unimplemented") {
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
	t.Logf("kubelet E/W lines (%d):\n%s", len(seen), strings.Join(seen, "\n"))
	if len(bad) > 0 {
		t.Errorf("kubelet log has %d runtime error lines not known to be benign:\n%s", len(bad), strings.Join(bad, "\n"))
	}
}
