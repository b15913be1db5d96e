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
)

// TestSecondDaemonSameRoot: a second daemon started with the same root dir
// (and everything else the same, the usual mistake) fails fast with a
// message that says why, and leaves the first one serving.
func TestSecondDaemonSameRoot(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.start()
	podID := e.runPod(e.podConfig("first"))

	begin := time.Now()
	cmd := exec.Command(e.bin, e.args()...)
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
	if s := e.podState(podID); s != cri.PodSandboxState_SANDBOX_READY {
		t.Errorf("first daemon's pod is %v after the second daemon's attempt", s)
	}
	if _, err := os.Stat(e.sock); err != nil {
		t.Errorf("first daemon's socket: %v", err)
	}
	e.removeAll()
	e.noLeftovers()
}

// TestMonitorKilled: a pod's monitor killed with SIGKILL leaves its
// containers running without a parent that answers; Stop and Remove must
// still kill and delete them, release the IP and leave nothing.
func TestMonitorKilled(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.start()
	image := e.pull()
	cfg := e.podConfig("orphan")
	podID := e.runPod(cfg)
	ctrID := e.startContainer(podID, cfg, containerConfig("app", image, "sleep", "3600"))
	mons := e.monitors()
	if len(mons) != 1 {
		t.Fatalf("%d monitors, want 1", len(mons))
	}
	syscall.Kill(mons[0], syscall.SIGKILL)
	eventually(t, "monitor gone", 10*time.Second, func() error {
		if len(e.monitors()) > 0 {
			return errNotYet
		}
		return nil
	})
	if s := e.runcStatus(ctrID); s != "running" {
		t.Fatalf("container is %q after its monitor died; the test assumes it runs on", s)
	}
	if _, err := e.rs.StopPodSandbox(ctx(t), &cri.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox with the monitor dead: %v", err)
	}
	if s := e.runcStatus(ctrID); s == "running" {
		t.Errorf("container still running after StopPodSandbox")
	}
	if s := e.runcStatus(podID); s == "running" {
		t.Errorf("pause still running after StopPodSandbox")
	}
	if st := e.containerStatus(ctrID); st.State != cri.ContainerState_CONTAINER_EXITED {
		t.Errorf("container is %v after StopPodSandbox, want EXITED", st.State)
	}
	if _, err := e.rs.RemovePodSandbox(ctx(t), &cri.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox with the monitor dead: %v", err)
	}
	e.noLeftovers()
}

// TestRebootWipesState simulates a host reboot with 5 pods running: the
// daemon and every process of the pods die, the state dir (tmpfs) is
// emptied. After restart every pod is NOTREADY, every container EXITED,
// their IPs released; Stop and Remove then succeed and leave nothing.
func TestRebootWipesState(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.start()
	image := e.pull()
	const n = 5
	var pods, ctrs []string
	for i := range n {
		cfg := e.podConfig("reboot" + string(rune('a'+i)))
		id := e.runPod(cfg)
		pods = append(pods, id)
		ctrs = append(ctrs, e.startContainer(id, cfg, containerConfig("app", image, "sleep", "3600")))
	}
	if a := e.ipamAllocations(); len(a) != n {
		t.Fatalf("%d IPs allocated for %d pods", len(a), n)
	}

	e.kill()
	e.killPods()
	for _, m := range mountsUnder(e.state) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Fatalf("unmount %s: %v", m, err)
		}
	}
	ents, _ := os.ReadDir(e.state)
	for _, d := range ents {
		if err := os.RemoveAll(filepath.Join(e.state, d.Name())); err != nil {
			t.Fatal(err)
		}
	}

	e.start()
	t.Logf("daemon serving %v after its start, with %d pods lost in a reboot to recover", e.lastStartup().Round(time.Millisecond), n)
	for i, id := range pods {
		if s := e.podState(id); s != cri.PodSandboxState_SANDBOX_NOTREADY {
			t.Errorf("pod %s is %v after the reboot, want NOTREADY", id, s)
		}
		st := e.containerStatus(ctrs[i])
		if st.State != cri.ContainerState_CONTAINER_EXITED {
			t.Errorf("container %s is %v after the reboot, want EXITED", ctrs[i], st.State)
		}
		if !strings.Contains(st.Message, "restart") {
			t.Errorf("container %s message %q does not say the host restarted", ctrs[i], st.Message)
		}
	}
	if a := e.ipamAllocations(); len(a) > 0 {
		t.Errorf("IPs still allocated after the reboot recovery: %v", a)
	}
	e.checkConsistent()
	e.removeAll()
	e.noLeftovers()
}
