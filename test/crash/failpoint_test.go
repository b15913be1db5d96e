package crash

import (
	"os"
	"path/filepath"
	"testing"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
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
	f := &fixture{image: e.pull(), podCfg: e.podConfig("fp")}
	f.podID = e.runPod(f.podCfg)
	return f
}

func createdSetup(e *env) *fixture {
	f := podSetup(e)
	id, err := e.createContainer(f.podID, f.podCfg, containerConfig("app", f.image, "sleep", "3600"))
	if err != nil {
		e.t.Fatal(err)
	}
	f.ctrID = id
	return f
}

func runningSetup(e *env) *fixture {
	f := podSetup(e)
	f.ctrID = e.startContainer(f.podID, f.podCfg, containerConfig("app", f.image, "sleep", "3600"))
	return f
}

func driveRun(e *env, f *fixture) {
	f.podCfg = e.podConfig("fp")
	_, _ = e.rs.RunPodSandbox(ctx(e.t), &cri.RunPodSandboxRequest{Config: f.podCfg})
}

func driveCreate(e *env, f *fixture) {
	_, _ = e.createContainer(f.podID, f.podCfg, containerConfig("app", f.image, "sleep", "3600"))
}

func driveStart(e *env, f *fixture) {
	_, _ = e.rs.StartContainer(ctx(e.t), &cri.StartContainerRequest{ContainerId: f.ctrID})
}

func driveStop(e *env, f *fixture) {
	_, _ = e.rs.StopPodSandbox(ctx(e.t), &cri.StopPodSandboxRequest{PodSandboxId: f.podID})
}

func driveRemove(e *env, f *fixture) {
	_, _ = e.rs.StopPodSandbox(ctx(e.t), &cri.StopPodSandboxRequest{PodSandboxId: f.podID})
	_, _ = e.rs.RemovePodSandbox(ctx(e.t), &cri.RemovePodSandboxRequest{PodSandboxId: f.podID})
}

func drivePull(e *env, f *fixture) {
	_, _ = e.is.PullImage(ctx(e.t), &cri.PullImageRequest{Image: &cri.ImageSpec{Image: busybox(e.t)}})
}

// checkRun: the pod is complete (READY, consistent) or absent, and absent
// means nothing of it is on the host.
func checkRun(e *env, f *fixture) {
	t := e.t
	pods, err := e.rs.ListPodSandbox(ctx(t), &cri.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	switch len(pods.Items) {
	case 0:
		t.Logf("pod absent after restart")
		e.noLeftovers()
		// The name is free again: a retry makes the pod.
		e.runPod(f.podCfg)
	case 1:
		if s := pods.Items[0].State; s != cri.PodSandboxState_SANDBOX_READY {
			t.Errorf("pod is %v after restart, want READY or absent", s)
		}
		t.Logf("pod complete after restart")
	default:
		t.Errorf("%d pods listed after one RunPodSandbox", len(pods.Items))
	}
	if n := len(e.ipamAllocations()); n > len(pods.Items) && len(pods.Items) > 0 {
		t.Errorf("%d IPs allocated for %d pods", n, len(pods.Items))
	}
}

// checkCreate: the container is CREATED or absent; absent leaves no bundle
// or rootfs mount.
func checkCreate(e *env, f *fixture) {
	t := e.t
	cs, err := e.rs.ListContainers(ctx(t), &cri.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	switch len(cs.Containers) {
	case 0:
		t.Logf("container absent after restart")
		if m := mountsUnder(filepath.Join(e.state, "containers")); len(m) > 0 {
			t.Errorf("rootfs mounts left: %v", m)
		}
		if ents, _ := os.ReadDir(filepath.Join(e.state, "containers")); len(ents) > 0 {
			t.Errorf("container bundles left: %d", len(ents))
		}
		if ents, _ := os.ReadDir(filepath.Join(e.root, "image", "containers")); len(ents) > 0 {
			t.Errorf("writable layers left: %d", len(ents))
		}
		// The name is free again.
		f.ctrID = e.startContainer(f.podID, f.podCfg, containerConfig("app", f.image, "sleep", "3600"))
	case 1:
		if s := cs.Containers[0].State; s != cri.ContainerState_CONTAINER_CREATED {
			t.Errorf("container is %v after restart, want CREATED or absent", s)
		}
		if _, err := e.rs.StartContainer(ctx(t), &cri.StartContainerRequest{ContainerId: cs.Containers[0].Id}); err != nil {
			t.Errorf("start the recovered container: %v", err)
		}
	default:
		t.Errorf("%d containers listed after one CreateContainer", len(cs.Containers))
	}
}

// checkStart: the container is CREATED (and then starts) or RUNNING.
func checkStart(e *env, f *fixture) {
	t := e.t
	st := e.containerStatus(f.ctrID)
	switch st.State {
	case cri.ContainerState_CONTAINER_CREATED:
		t.Logf("container created (not started) after restart")
		if _, err := e.rs.StartContainer(ctx(t), &cri.StartContainerRequest{ContainerId: f.ctrID}); err != nil {
			t.Errorf("start the recovered container: %v", err)
		}
	case cri.ContainerState_CONTAINER_RUNNING:
		t.Logf("container running after restart")
	default:
		t.Errorf("container is %v after restart, want CREATED or RUNNING", st.State)
	}
	if st := e.containerStatus(f.ctrID); st.State != cri.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container is %v, want RUNNING", st.State)
	}
}

// checkStopped: the pod is listed, READY or NOTREADY; Stop then works.
func checkStopped(e *env, f *fixture) {
	t := e.t
	t.Logf("pod is %v after restart", e.podState(f.podID))
	if _, err := e.rs.StopPodSandbox(ctx(t), &cri.StopPodSandboxRequest{PodSandboxId: f.podID}); err != nil {
		t.Errorf("StopPodSandbox after restart: %v", err)
	}
	if s := e.podState(f.podID); s != cri.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("pod is %v after Stop, want NOTREADY", s)
	}
	if st := e.containerStatus(f.ctrID); st.State != cri.ContainerState_CONTAINER_EXITED {
		t.Errorf("container is %v after Stop, want EXITED", st.State)
	}
	if a := e.ipamAllocations(); len(a) > 0 {
		t.Errorf("stopped pod still holds IPs %v", a)
	}
}

// checkRemoved: the pod is gone or removable.
func checkRemoved(e *env, f *fixture) {
	t := e.t
	pods, err := e.rs.ListPodSandbox(ctx(t), &cri.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d pods listed after restart", len(pods.Items))
	if _, err := e.rs.RemovePodSandbox(ctx(t), &cri.RemovePodSandboxRequest{PodSandboxId: f.podID}); err != nil {
		t.Errorf("RemovePodSandbox after restart: %v", err)
	}
	e.noLeftovers()
}

// checkPull: the image is complete or absent; no temp files; a pull then
// succeeds and the image runs.
func checkPull(e *env, f *fixture) {
	t := e.t
	ref := busybox(t)
	r, err := e.is.ImageStatus(ctx(t), &cri.ImageStatusRequest{Image: &cri.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image present after restart: %v", r.Image != nil)
	if ents, _ := os.ReadDir(filepath.Join(e.root, "image", "tmp")); len(ents) > 0 {
		t.Errorf("image tmp dir holds %d entries after restart", len(ents))
	}
	f.image = e.pull()
	f.podCfg = e.podConfig("fp")
	f.podID = e.runPod(f.podCfg)
	id := e.startContainer(f.podID, f.podCfg, containerConfig("app", f.image, "sh", "-c", "ls /bin/busybox && sleep 3600"))
	eventually(t, "container from the recovered image runs", 30e9, func() error {
		if st := e.containerStatus(id); st.State != cri.ContainerState_CONTAINER_RUNNING {
			return errNotYet
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
			e.start("POD_SHIM_FAILPOINTS=" + c.step)
			f := c.setup(e)
			c.drive(e, f)
			e.waitCrash(c.step)
			e.start()
			e.checkConsistent()
			c.check(e, f)
			e.checkConsistent()
			e.removeAll()
			e.noLeftovers()
		})
	}
}
