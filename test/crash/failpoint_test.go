package crash

import (
	"os"
	"path/filepath"
	"testing"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

// crashCase drives one operation into one failpoint.
type crashCase struct {
	step string
	// setup runs with the failpoint armed but not reached; drive then
	// makes the daemon reach it (its RPC fails as the daemon dies).
	setup func(e *env) *fixture
	drive func(e *env, f *fixture)
	// check runs after the restart, before everything is removed.
	check func(e *env, f *fixture)
}

// fixture is what setup made.
type fixture struct {
	image  string
	podID  string
	podCfg *cri.PodSandboxConfig
	ctrID  string
}

func noSetup(e *env) *fixture { return &fixture{} }

func podSetup(e *env) *fixture {
	f := &fixture{image: e.Pull(), podCfg: e.PodConfig("fp")}
	f.podID = e.RunPod(f.podCfg)
	return f
}

func createdSetup(e *env) *fixture {
	f := podSetup(e)
	id, err := e.CreateContainer(f.podID, f.podCfg, harness.ContainerConfig("app", f.image, "sleep", "3600"))
	if err != nil {
		e.T.Fatal(err)
	}
	f.ctrID = id
	return f
}

func runningSetup(e *env) *fixture {
	f := podSetup(e)
	f.ctrID = e.StartContainer(f.podID, f.podCfg, harness.ContainerConfig("app", f.image, "sleep", "3600"))
	return f
}

func driveRun(e *env, f *fixture) {
	f.podCfg = e.PodConfig("fp")
	_, _ = e.RS.RunPodSandbox(ctx(e.T), &cri.RunPodSandboxRequest{Config: f.podCfg})
}

func driveCreate(e *env, f *fixture) {
	_, _ = e.CreateContainer(f.podID, f.podCfg, harness.ContainerConfig("app", f.image, "sleep", "3600"))
}

func driveStart(e *env, f *fixture) {
	_, _ = e.RS.StartContainer(ctx(e.T), &cri.StartContainerRequest{ContainerId: f.ctrID})
}

func driveStop(e *env, f *fixture) {
	_, _ = e.RS.StopPodSandbox(ctx(e.T), &cri.StopPodSandboxRequest{PodSandboxId: f.podID})
}

func driveRemove(e *env, f *fixture) {
	_, _ = e.RS.StopPodSandbox(ctx(e.T), &cri.StopPodSandboxRequest{PodSandboxId: f.podID})
	_, _ = e.RS.RemovePodSandbox(ctx(e.T), &cri.RemovePodSandboxRequest{PodSandboxId: f.podID})
}

func drivePull(e *env, f *fixture) {
	_, _ = e.IS.PullImage(ctx(e.T), &cri.PullImageRequest{Image: &cri.ImageSpec{Image: harness.Busybox(e.T)}})
}

// checkRun: the pod is complete (READY, consistent) or absent, and absent
// means nothing of it is on the host.
func checkRun(e *env, f *fixture) {
	t := e.T
	pods, err := e.RS.ListPodSandbox(ctx(t), &cri.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	switch len(pods.Items) {
	case 0:
		t.Logf("pod absent after restart")
		e.NoLeftovers()
		// The name is free again: a retry makes the pod.
		e.RunPod(f.podCfg)
	case 1:
		if s := pods.Items[0].State; s != cri.PodSandboxState_SANDBOX_READY {
			t.Errorf("pod is %v after restart, want READY or absent", s)
		}
		t.Logf("pod complete after restart")
	default:
		t.Errorf("%d pods listed after one RunPodSandbox", len(pods.Items))
	}
	if n := len(e.IPAMAllocations()); n > len(pods.Items) && len(pods.Items) > 0 {
		t.Errorf("%d IPs allocated for %d pods", n, len(pods.Items))
	}
}

// checkCreate: the container is CREATED or absent; absent leaves no bundle
// or rootfs mount.
func checkCreate(e *env, f *fixture) {
	t := e.T
	cs, err := e.RS.ListContainers(ctx(t), &cri.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	switch len(cs.Containers) {
	case 0:
		t.Logf("container absent after restart")
		if m := harness.MountsUnder(filepath.Join(e.State, "containers")); len(m) > 0 {
			t.Errorf("rootfs mounts left: %v", m)
		}
		if ents, _ := os.ReadDir(filepath.Join(e.State, "containers")); len(ents) > 0 {
			t.Errorf("container bundles left: %d", len(ents))
		}
		if ents, _ := os.ReadDir(filepath.Join(e.Root, "image", "containers")); len(ents) > 0 {
			t.Errorf("writable layers left: %d", len(ents))
		}
		// The name is free again.
		f.ctrID = e.StartContainer(f.podID, f.podCfg, harness.ContainerConfig("app", f.image, "sleep", "3600"))
	case 1:
		if s := cs.Containers[0].State; s != cri.ContainerState_CONTAINER_CREATED {
			t.Errorf("container is %v after restart, want CREATED or absent", s)
		}
		if _, err := e.RS.StartContainer(ctx(t), &cri.StartContainerRequest{ContainerId: cs.Containers[0].Id}); err != nil {
			t.Errorf("start the recovered container: %v", err)
		}
	default:
		t.Errorf("%d containers listed after one CreateContainer", len(cs.Containers))
	}
}

// checkStart: the container is CREATED (and then starts) or RUNNING.
func checkStart(e *env, f *fixture) {
	t := e.T
	st := e.ContainerStatus(f.ctrID)
	switch st.State {
	case cri.ContainerState_CONTAINER_CREATED:
		t.Logf("container created (not started) after restart")
		if _, err := e.RS.StartContainer(ctx(t), &cri.StartContainerRequest{ContainerId: f.ctrID}); err != nil {
			t.Errorf("start the recovered container: %v", err)
		}
	case cri.ContainerState_CONTAINER_RUNNING:
		t.Logf("container running after restart")
	default:
		t.Errorf("container is %v after restart, want CREATED or RUNNING", st.State)
	}
	if st := e.ContainerStatus(f.ctrID); st.State != cri.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container is %v, want RUNNING", st.State)
	}
}

// checkStopped: the pod is listed, READY or NOTREADY; Stop then works.
func checkStopped(e *env, f *fixture) {
	t := e.T
	t.Logf("pod is %v after restart", e.PodState(f.podID))
	if _, err := e.RS.StopPodSandbox(ctx(t), &cri.StopPodSandboxRequest{PodSandboxId: f.podID}); err != nil {
		t.Errorf("StopPodSandbox after restart: %v", err)
	}
	if s := e.PodState(f.podID); s != cri.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("pod is %v after Stop, want NOTREADY", s)
	}
	if st := e.ContainerStatus(f.ctrID); st.State != cri.ContainerState_CONTAINER_EXITED {
		t.Errorf("container is %v after Stop, want EXITED", st.State)
	}
	if a := e.IPAMAllocations(); len(a) > 0 {
		t.Errorf("stopped pod still holds IPs %v", a)
	}
}

// checkRemoved: the pod is gone or removable.
func checkRemoved(e *env, f *fixture) {
	t := e.T
	pods, err := e.RS.ListPodSandbox(ctx(t), &cri.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d pods listed after restart", len(pods.Items))
	if _, err := e.RS.RemovePodSandbox(ctx(t), &cri.RemovePodSandboxRequest{PodSandboxId: f.podID}); err != nil {
		t.Errorf("RemovePodSandbox after restart: %v", err)
	}
	e.NoLeftovers()
}

// checkPull: the image is complete or absent; no temp files; a pull then
// succeeds and the image runs.
func checkPull(e *env, f *fixture) {
	t := e.T
	ref := harness.Busybox(t)
	r, err := e.IS.ImageStatus(ctx(t), &cri.ImageStatusRequest{Image: &cri.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image present after restart: %v", r.Image != nil)
	if ents, _ := os.ReadDir(filepath.Join(e.Root, "image", "tmp")); len(ents) > 0 {
		t.Errorf("image tmp dir holds %d entries after restart", len(ents))
	}
	f.image = e.Pull()
	f.podCfg = e.PodConfig("fp")
	f.podID = e.RunPod(f.podCfg)
	id := e.StartContainer(f.podID, f.podCfg, harness.ContainerConfig("app", f.image, "sh", "-c", "ls /bin/busybox && sleep 3600"))
	harness.Eventually(t, "container from the recovered image runs", 30e9, func() error {
		if st := e.ContainerStatus(id); st.State != cri.ContainerState_CONTAINER_RUNNING {
			return harness.ErrNotYet
		}
		return nil
	})
}

var crashCases = []crashCase{
	{"sandbox-run-after-intent", noSetup, driveRun, checkRun},
	{"sandbox-run-after-netns", noSetup, driveRun, checkRun},
	{"sandbox-run-after-cni", noSetup, driveRun, checkRun},
	{"sandbox-run-after-pause", noSetup, driveRun, checkRun},
	{"sandbox-run-before-ready", noSetup, driveRun, checkRun},
	{"container-create-after-intent", podSetup, driveCreate, checkCreate},
	{"container-create-after-rootfs", podSetup, driveCreate, checkCreate},
	{"container-create-before-done", podSetup, driveCreate, checkCreate},
	{"container-start-before-run", createdSetup, driveStart, checkStart},
	{"container-start-after-run", createdSetup, driveStart, checkStart},
	{"sandbox-stop-after-pause", runningSetup, driveStop, checkStopped},
	{"sandbox-stop-after-teardown", runningSetup, driveStop, checkStopped},
	{"sandbox-remove-after-release", runningSetup, driveRemove, checkRemoved},
	{"image-pull-after-unpack", noSetup, drivePull, checkPull},
	{"image-pull-after-layer", noSetup, drivePull, checkPull},
	{"image-pull-before-commit", noSetup, drivePull, checkPull},
}

// TestFailpoints is issue 6's first acceptance item: for each failpoint,
// crash the daemon there, restart it, and find the object complete or
// absent; then remove everything and find nothing left on the host.
func TestFailpoints(t *testing.T) {
	requireHost(t)
	for _, c := range crashCases {
		t.Run(c.step, func(t *testing.T) {
			e := newEnv(t)
			e.Start("POD_SHIM_FAILPOINTS=" + c.step)
			f := c.setup(e)
			c.drive(e, f)
			e.waitCrash(c.step)
			e.Start()
			e.checkConsistent()
			c.check(e, f)
			e.checkConsistent()
			e.RemoveAll()
			e.NoLeftovers()
		})
	}
}
