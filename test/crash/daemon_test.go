package crash

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

// TestSecondDaemonSameRoot: a second daemon started with the same root dir
// (and everything else the same, the usual mistake) fails fast with a
// message that says why, and leaves the first one serving.
func TestSecondDaemonSameRoot(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.Start()
	podID := e.RunPod(e.PodConfig("first"))

	begin := time.Now()
	cmd := exec.Command(e.Bin, e.Args()...)
	out, err := cmd.CombinedOutput()
	took := time.Since(begin)
	if err == nil {
		t.Fatalf("second daemon on the same root exited 0; output:\n%s", out)
	}
	t.Logf("second daemon failed after %v: %s", took.Round(time.Millisecond), strings.TrimSpace(string(out)))
	// The store's open timeout is 5 s; the bound only catches a hang.
	if took > 60*time.Second {
		t.Errorf("second daemon took %v to give up", took)
	}
	if !strings.Contains(string(out), "locked by another process") || !strings.Contains(string(out), "same root dir") {
		t.Errorf("second daemon's message does not say the root dir is in use:\n%s", out)
	}
	if s := e.PodState(podID); s != cri.PodSandboxState_SANDBOX_READY {
		t.Errorf("first daemon's pod is %v after the second daemon's attempt", s)
	}
	if _, err := os.Stat(e.Sock); err != nil {
		t.Errorf("first daemon's socket: %v", err)
	}
	e.RemoveAll()
	e.NoLeftovers()
}

// TestMonitorKilled: a pod's monitor killed with SIGKILL leaves its
// containers running without a parent that answers; Stop and Remove must
// still kill and delete them, release the IP and leave nothing.
func TestMonitorKilled(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.Start()
	image := e.Pull()
	cfg := e.PodConfig("orphan")
	podID := e.RunPod(cfg)
	ctrID := e.StartContainer(podID, cfg, harness.ContainerConfig("app", image, "sleep", "3600"))
	mons := e.Monitors()
	if len(mons) != 1 {
		t.Fatalf("%d monitors, want 1", len(mons))
	}
	syscall.Kill(mons[0].Pid, syscall.SIGKILL)
	harness.Eventually(t, "monitor gone", 10*time.Second, func() error {
		if len(e.Monitors()) > 0 {
			return harness.ErrNotYet
		}
		return nil
	})
	if s := e.runcStatus(ctrID); s != "running" {
		t.Fatalf("container is %q after its monitor died; the test assumes it runs on", s)
	}
	if _, err := e.RS.StopPodSandbox(ctx(t), &cri.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox with the monitor dead: %v", err)
	}
	if s := e.runcStatus(ctrID); s == "running" {
		t.Errorf("container still running after StopPodSandbox")
	}
	if s := e.runcStatus(podID); s == "running" {
		t.Errorf("pause still running after StopPodSandbox")
	}
	if st := e.ContainerStatus(ctrID); st.State != cri.ContainerState_CONTAINER_EXITED {
		t.Errorf("container is %v after StopPodSandbox, want EXITED", st.State)
	}
	if _, err := e.RS.RemovePodSandbox(ctx(t), &cri.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox with the monitor dead: %v", err)
	}
	e.NoLeftovers()
}

// TestRebootWipesState simulates a host reboot with 5 pods running: the
// daemon and every process of the pods die, the state dir (tmpfs) is
// emptied. After restart every pod is NOTREADY, every container EXITED,
// their IPs released; Stop and Remove then succeed and leave nothing.
func TestRebootWipesState(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.Start()
	image := e.Pull()
	const n = 5
	var pods, ctrs []string
	for i := range n {
		cfg := e.PodConfig("reboot" + string(rune('a'+i)))
		id := e.RunPod(cfg)
		pods = append(pods, id)
		ctrs = append(ctrs, e.StartContainer(id, cfg, harness.ContainerConfig("app", image, "sleep", "3600")))
	}
	if a := e.IPAMAllocations(); len(a) != n {
		t.Fatalf("%d IPs allocated for %d pods", len(a), n)
	}

	e.Kill()
	e.KillPods()
	for _, m := range harness.MountsUnder(e.State) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Fatalf("unmount %s: %v", m, err)
		}
	}
	ents, _ := os.ReadDir(e.State)
	for _, d := range ents {
		if err := os.RemoveAll(filepath.Join(e.State, d.Name())); err != nil {
			t.Fatal(err)
		}
	}

	e.Start()
	t.Logf("daemon serving %v after its start, with %d pods lost in a reboot to recover", e.LastStartup().Round(time.Millisecond), n)
	for i, id := range pods {
		if s := e.PodState(id); s != cri.PodSandboxState_SANDBOX_NOTREADY {
			t.Errorf("pod %s is %v after the reboot, want NOTREADY", id, s)
		}
		st := e.ContainerStatus(ctrs[i])
		if st.State != cri.ContainerState_CONTAINER_EXITED {
			t.Errorf("container %s is %v after the reboot, want EXITED", ctrs[i], st.State)
		}
		if !strings.Contains(st.Message, "restart") {
			t.Errorf("container %s message %q does not say the host restarted", ctrs[i], st.Message)
		}
	}
	if a := e.IPAMAllocations(); len(a) > 0 {
		t.Errorf("IPs still allocated after the reboot recovery: %v", a)
	}
	e.checkConsistent()
	e.RemoveAll()
	e.NoLeftovers()
}
