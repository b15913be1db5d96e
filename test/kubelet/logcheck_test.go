package kubelet

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// runtimeError picks the kubelet log lines that would be pod-shim's fault:
// unimplemented calls, failed stats/config calls, gRPC errors.
var runtimeError = regexp.MustCompile(`Unimplemented|rpc error|ImageFsInfo|RuntimeConfig|ListContainerStats|ListPodSandboxStats|ContainerStats`)

// probeRace is the kubelet's exec probe racing its container's exit. A
// probe worker decides to probe from the kubelet's cached pod status, which
// learns of an exit only at the next PLEG relist (every second); a probe
// that fires between a container's exit and that relist reaches the runtime
// for an exited container, which refuses the exec with FailedPrecondition
// (containerd refuses it too). The kubelet logs the refused ExecSync and
// then "Probe errored" for it. This is benign only for a container that a
// scenario made exit while its probes ran (env.noteProbedExit): on any
// other container it would mean pod-shim reported a live container exited.
var probeRace = regexp.MustCompile(`rpc error: code = FailedPrecondition desc = container ([0-9a-f]{64}) is exited: `)

// syncCancelRace is the standalone kubelet cancelling a pod sync under a
// runtime call. Without an API server the kubelet builds its Node object
// from scratch on every GetNode (initialNode), and that asks the runtime's
// Version with the context of the pod sync that wants the node. When a pod
// becomes terminating (it reached Succeeded or Failed, or its manifest was
// deleted) its pod worker cancels the sync in flight ("Cancelling current
// pod sync", logged at -v=3), and a Version call of that sync ends on the
// client side with code Canceled: pod-shim never answers Canceled. Benign
// only right after such a cancellation.
var syncCancelRace = regexp.MustCompile(`"Cancelling current pod sync"`)

// benign are error lines the kubelet logs for reasons other than the
// runtime, each with its race; everything else runtimeError matches fails.
var benign = []struct {
	re     *regexp.Regexp
	why    string
	exited bool           // the line must name a container of env.probedExits (probeRace)
	after  *regexp.Regexp // the line must follow one of these within cancelWindow
}{
	{re: regexp.MustCompile(`"ContainerStatus from runtime service failed" err="rpc error: code = NotFound`),
		why: "the kubelet's pod_container_deletor and GC ask for the status of dead containers it (or its GC) already removed; NotFound is the CRI answer (containerd logs the same)"},
	{re: regexp.MustCompile(`"DeleteContainer returned error" .*rpc error: code = NotFound`),
		why: "same: pod_container_deletor removing a container that is already gone"},
	{re: regexp.MustCompile(`"failed to remove pod init container .*rpc error: code = NotFound`),
		why: "same: the kubelet pruning an old init container attempt that is already gone"},
	{re: regexp.MustCompile(`"Error getting ContainerStatus for containerID" .*rpc error: code = NotFound`),
		why: "same, from the kubelet's container GC (info level)"},
	{re: regexp.MustCompile(`"ExecSync cmd from runtime service failed" err="rpc error: code = FailedPrecondition desc = container [0-9a-f]{64} is exited: `),
		why: "probeRace: the runtime call of an exec probe that raced its container's exit", exited: true},
	{re: regexp.MustCompile(`"Probe errored" .*err="rpc error: code = FailedPrecondition desc = container [0-9a-f]{64} is exited: `),
		why: "probeRace: the prober reporting the same refused exec", exited: true},
	{re: regexp.MustCompile(`"Event occurred" .*reason="Unhealthy" message="(Readiness|Liveness|Startup) probe errored and resulted in unknown state: rpc error: code = FailedPrecondition desc = container [0-9a-f]{64} is exited: `),
		why: "probeRace: the prober's Unhealthy event for the same refused exec (logged at -v=3)", exited: true},
	{re: regexp.MustCompile(`"Version from runtime service failed" err="rpc error: code = Canceled desc = context canceled"`),
		why: "syncCancelRace", after: syncCancelRace},
}

// cancelWindow bounds how long after the kubelet cancels a pod sync its
// cancelled Version call may be logged: the gRPC client returns at once on
// cancellation, so this only absorbs scheduling delay on a loaded machine.
const cancelWindow = 5 * time.Second

// klogTime is a klog line's timestamp ("E1206 01:38:57.037709 ..."), in a
// year of its own (klog has none): only differences are used.
func klogTime(l string) (time.Time, bool) {
	f := strings.Fields(l)
	if len(f) < 2 || len(f[0]) != 5 {
		return time.Time{}, false
	}
	ts, err := time.Parse("0102 15:04:05.000000", f[0][1:]+" "+f[1])
	return ts, err == nil
}

// testKubeletLog fails on any error line of the kubelet that involves the
// runtime and is not listed in benign; every E line is logged for review.
func testKubeletLog(t *testing.T, e *env) {
	var bad, seen []string
	var lastCancel time.Time // of the latest syncCancelRace line so far
	for _, l := range strings.Split(readFile(e.Log), "\n") {
		if syncCancelRace.MatchString(l) {
			if ts, ok := klogTime(l); ok {
				lastCancel = ts
			}
		}
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
			if !b.re.MatchString(l) {
				continue
			}
			if b.after != nil {
				ts, ok := klogTime(l)
				if !ok || lastCancel.IsZero() || ts.Before(lastCancel) || ts.Sub(lastCancel) > cancelWindow {
					continue // no pod sync was cancelled just before it
				}
			}
			if b.exited {
				m := probeRace.FindStringSubmatch(l)
				if m == nil || e.probedExit(m[1]) == "" {
					continue // a probe found exited a container no scenario stopped
				}
			}
			ok = true
			break
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
