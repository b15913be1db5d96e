package network

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

// networkReady reads NetworkReady from Status.
func (e *env) networkReady() (bool, string) {
	r, err := e.RS.Status(ctx(e.T), &cri.StatusRequest{})
	if err != nil {
		e.T.Fatalf("Status: %v", err)
	}
	for _, c := range r.Status.Conditions {
		if c.Type == cri.NetworkReady {
			return c.Status, c.Reason + ": " + c.Message
		}
	}
	e.T.Fatal("Status has no NetworkReady condition")
	return false, ""
}

// TestConfDropIn: a CNI config dropped into the conf dir while the daemon
// runs makes NetworkReady true within 5 s, and a pod then gets an IP.
func TestConfDropIn(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.Start()
	if ok, why := e.networkReady(); ok {
		t.Fatalf("NetworkReady is true with an empty conf dir")
	} else if !strings.Contains(why, "NetworkPluginNotReady") {
		t.Errorf("NetworkReady false with reason %q, want NetworkPluginNotReady", why)
	}
	if _, err := e.RS.RunPodSandbox(ctx(t), &cri.RunPodSandboxRequest{Config: e.podConfig("early")}); err == nil {
		t.Error("RunPodSandbox succeeded with no network config")
	}

	e.WriteNetConf(e.BridgePlugin())
	// 5 s is the acceptance bound: the daemon looks at the dir every 0.5 s.
	harness.Eventually(t, "NetworkReady after the config appeared", 5*time.Second, func() error {
		if ok, why := e.networkReady(); !ok {
			return errorString(why)
		}
		return nil
	})
	id := e.RunPod(e.podConfig("late"))
	ip := e.PodStatus(id).Status.GetNetwork().GetIp()
	if !e.Subnet.Contains(net.ParseIP(ip)) {
		t.Errorf("pod IP %q not in %s", ip, e.Subnet)
	}
	if err := e.RemovePod(id); err != nil {
		t.Fatal(err)
	}
	e.NoLeftovers()
}

// Fake plugins chained after the real bridge (which allocates the IP and the
// veth). Each reads its config from stdin; stateDir in it is where it counts.
const (
	versionCase = `VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}'; exit 0;;`

	// failAdd fails ADD after the bridge allocated; DEL succeeds.
	failAddPlugin = `#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
` + versionCase + `
ADD) echo '{"cniVersion":"1.0.0","code":11,"msg":"fake: ADD fails after allocation"}'; exit 1;;
esac
exit 0
`
	// hangAdd never answers ADD (exec: the killed process is the one
	// holding the pipes); DEL succeeds.
	hangAddPlugin = `#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
` + versionCase + `
ADD) exec sleep 3600;;
esac
exit 0
`
	// failDelTwice passes ADD through and fails the first two DELs.
	failDelTwicePlugin = `#!/bin/sh
conf=$(cat)
dir=$(printf '%s' "$conf" | jq -r .stateDir)
case "$CNI_COMMAND" in
` + versionCase + `
ADD) printf '%s' "$conf" | jq -c '.prevResult + {cniVersion: .cniVersion}'; exit 0;;
DEL)
	n=$(cat "$dir/dels" 2>/dev/null || echo 0); n=$((n+1)); echo $n >"$dir/dels"
	if [ $n -le 2 ]; then echo '{"cniVersion":"1.0.0","code":11,"msg":"fake: DEL fails"}'; exit 1; fi
	exit 0;;
esac
exit 0
`
)

// TestFailingADD: ADD fails after the bridge allocated → RunPodSandbox
// errors and nothing is left (IP file, netns, veth).
func TestFailingADD(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.FakePlugin("failadd", failAddPlugin)
	e.WriteNetConf(e.BridgePlugin(), map[string]any{"type": "failadd"})
	e.Start()
	_, err := e.RS.RunPodSandbox(ctx(t), &cri.RunPodSandboxRequest{Config: e.podConfig("failadd")})
	if err == nil {
		t.Fatal("RunPodSandbox succeeded although ADD failed")
	}
	if !strings.Contains(err.Error(), "ADD fails after allocation") {
		t.Errorf("RunPodSandbox error %v does not carry the plugin's message", err)
	}
	e.noPods()
	e.NoLeftovers()
}

// TestHangingADD: ADD never returns → RunPodSandbox fails at the configured
// [cni] timeout (far below the 2-minute default), and cleans up.
func TestHangingADD(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.SetConfig("[cni]\ntimeout = \"3s\"\n")
	e.FakePlugin("hangadd", hangAddPlugin)
	e.WriteNetConf(e.BridgePlugin(), map[string]any{"type": "hangadd"})
	e.Start()
	start := time.Now()
	_, err := e.RS.RunPodSandbox(ctx(t), &cri.RunPodSandboxRequest{Config: e.podConfig("hang")})
	took := time.Since(start)
	if err == nil {
		t.Fatal("RunPodSandbox succeeded although ADD hung")
	}
	// Not a speed check: only that the configured bound, not the 2-minute
	// default nor the client's, ended the call.
	if took >= 2*time.Minute || status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("RunPodSandbox failed after %v with %v; want DeadlineExceeded from the 3s CNI timeout", took, err)
	}
	t.Logf("RunPodSandbox with a hanging ADD failed after %v: %v", took, err)
	e.noPods()
	e.NoLeftovers()
}

// TestFailingDEL: DEL fails twice → StopPodSandbox and RemovePodSandbox
// report it and the pod stays NOTREADY and listed; a later call finishes.
func TestFailingDEL(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	stateDir := filepath.Join(e.Base, "faildel")
	os.MkdirAll(stateDir, 0o755)
	e.FakePlugin("faildel", failDelTwicePlugin)
	e.WriteNetConf(e.BridgePlugin(), map[string]any{"type": "faildel", "stateDir": stateDir})
	e.Start()
	id := e.RunPod(e.podConfig("faildel"))
	ip := e.PodStatus(id).Status.GetNetwork().GetIp()
	if ip == "" {
		t.Fatal("pod has no IP")
	}

	if err := e.StopPod(id); err == nil {
		t.Fatal("StopPodSandbox succeeded although CNI DEL failed")
	} else if !strings.Contains(err.Error(), "DEL fails") {
		t.Errorf("StopPodSandbox error %v does not carry the plugin's message", err)
	}
	if st := e.PodStatus(id).Status.State; st != cri.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("after a failed stop the pod is %v, want NOTREADY", st)
	}
	if a := e.IPAMAllocations(); len(a) != 1 {
		t.Errorf("host-local allocations after a failed DEL: %v, want the pod's", a)
	}
	if err := e.RemovePod(id); err == nil {
		t.Fatal("RemovePodSandbox succeeded although CNI DEL failed")
	}
	if _, err := e.RS.PodSandboxStatus(ctx(t), &cri.PodSandboxStatusRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("pod forgotten after a failed RemovePodSandbox: %v", err)
	}
	// Third DEL succeeds: Remove finishes the job.
	if err := e.RemovePod(id); err != nil {
		t.Fatalf("RemovePodSandbox after DEL recovered: %v", err)
	}
	if _, err := e.RS.PodSandboxStatus(ctx(t), &cri.PodSandboxStatusRequest{PodSandboxId: id}); status.Code(err) != codes.NotFound {
		t.Errorf("PodSandboxStatus after removal: %v, want NotFound", err)
	}
	if b, _ := os.ReadFile(filepath.Join(stateDir, "dels")); strings.TrimSpace(string(b)) != "3" {
		t.Errorf("fake plugin saw %q DELs, want 3", b)
	}
	e.noPods()
	e.NoLeftovers()
}

// noPods fails if the daemon still lists a pod.
func (e *env) noPods() {
	e.T.Helper()
	r, err := e.RS.ListPodSandbox(ctx(e.T), &cri.ListPodSandboxRequest{})
	if err != nil {
		e.T.Fatal(err)
	}
	for _, p := range r.Items {
		e.T.Errorf("pod %s (%s) still listed", p.Id, p.Metadata.GetName())
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

// TestFailureAfterADD: the pause container fails to start (runc refuses a
// sysctl value) while CNI ADD succeeds beside it → RunPodSandbox errors and
// DEL has run: no IP, netns or veth is left.
func TestFailureAfterADD(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.WriteNetConf(e.BridgePlugin(), portmapPlugin())
	e.Start()
	cfg := e.podConfig("badpause", func(c *cri.PodSandboxConfig) {
		c.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "not-a-number"}
		c.PortMappings = []*cri.PortMapping{{Protocol: cri.Protocol_TCP, ContainerPort: 80, HostPort: 28082}}
	})
	if _, err := e.RS.RunPodSandbox(ctx(t), &cri.RunPodSandboxRequest{Config: cfg}); err == nil {
		t.Fatal("RunPodSandbox succeeded although pause cannot start")
	} else {
		t.Logf("RunPodSandbox: %v", err)
	}
	if !strings.Contains(readFile(e.LogFile), "pod network set up") {
		t.Log("note: ADD had not finished when pause failed; DEL still ran for whatever it allocated")
	}
	e.noPods()
	e.NoLeftovers()
}

// TestPodCIDRFromKubelet: a config whose subnet is "usePodCidr" waits for
// UpdateRuntimeConfig, then pods get IPs from the CIDR the kubelet sent.
func TestPodCIDRFromKubelet(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	p := e.BridgePlugin()
	p["ipam"].(map[string]any)["ranges"] = [][]map[string]string{{{"subnet": "usePodCidr"}}}
	e.WriteNetConf(p)
	e.Start()
	if ok, why := e.networkReady(); ok || !strings.Contains(why, "UpdateRuntimeConfig") {
		t.Errorf("before the pod CIDR: NetworkReady %v (%s), want false naming UpdateRuntimeConfig", ok, why)
	}
	if _, err := e.RS.UpdateRuntimeConfig(ctx(t), &cri.UpdateRuntimeConfigRequest{RuntimeConfig: &cri.RuntimeConfig{
		NetworkConfig: &cri.NetworkConfig{PodCidr: e.Subnet.String()}}}); err != nil {
		t.Fatal(err)
	}
	if ok, why := e.networkReady(); !ok {
		t.Fatalf("after UpdateRuntimeConfig: NetworkReady false: %s", why)
	}
	id := e.RunPod(e.podConfig("cidr"))
	if ip := e.PodStatus(id).Status.Network.Ip; !e.Subnet.Contains(net.ParseIP(ip)) {
		t.Errorf("pod IP %q not in the pod CIDR %s", ip, e.Subnet)
	}
	if _, err := e.RS.UpdateRuntimeConfig(ctx(t), &cri.UpdateRuntimeConfigRequest{RuntimeConfig: &cri.RuntimeConfig{
		NetworkConfig: &cri.NetworkConfig{PodCidr: "10.248.0.0/33"}}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("UpdateRuntimeConfig with a bad CIDR: %v, want InvalidArgument", err)
	}
	if err := e.RemovePod(id); err != nil {
		t.Fatal(err)
	}
	e.NoLeftovers()
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
