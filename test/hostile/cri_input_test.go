package hostile

import (
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

func wantCode(t *testing.T, what string, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Errorf("%s: %v; want %v containing %q", what, err, code, msg)
	}
}

// Cgroup file names from CRI requests are checked before anything is
// written: a traversal in a unified key or a hugepage size is
// InvalidArgument from CreateContainer, UpdateContainerResources and
// UpdatePodSandboxResources, and no file appears outside the cgroup tree.
// A privileged container in an unprivileged pod is refused.
func TestCRIInputRefused(t *testing.T) {
	requireHost(t)
	d := startDaemon(t, harness.Options{})
	img := d.Pull()
	podCfg := d.PodConfig("input")
	pod := d.RunPod(podCfg)

	marker := filepath.Join(t.TempDir(), "escaped")
	// Deep enough to leave /sys/fs/cgroup/<controller>/<parent>/<id> and
	// reach the test's temp dir from /.
	up := strings.Repeat("../", 16)
	escape := up + strings.TrimPrefix(marker, "/")
	bad := []*cri.LinuxContainerResources{
		{Unified: map[string]string{escape: "1"}},
		{Unified: map[string]string{"memory.max/" + escape: "1"}},
		{Unified: map[string]string{"cgroup.procs": "1"}},
		{HugepageLimits: []*cri.HugepageLimit{{PageSize: "2MB/" + escape, Limit: 1}}},
		{HugepageLimits: []*cri.HugepageLimit{{PageSize: "..", Limit: 1}}},
	}
	for i, r := range bad {
		cfg := harness.ContainerConfig("bad"+string(rune('a'+i)), img, "sleep", "1000")
		cfg.Linux = &cri.LinuxContainerConfig{Resources: r}
		_, err := d.CreateContainer(pod, podCfg, cfg)
		wantCode(t, "CreateContainer with "+r.String(), err, codes.InvalidArgument, "")
	}
	list, err := d.RS.ListContainers(harness.Ctx(t), &cri.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Containers) != 0 {
		t.Fatalf("refused creates left %d containers", len(list.Containers))
	}

	good := d.StartContainer(pod, podCfg, harness.ContainerConfig("good", img, "sleep", "1000"))
	for _, r := range bad {
		_, err := d.RS.UpdateContainerResources(harness.Ctx(t), &cri.UpdateContainerResourcesRequest{ContainerId: good, Linux: r})
		wantCode(t, "UpdateContainerResources with "+r.String(), err, codes.InvalidArgument, "")
		_, err = d.RS.UpdatePodSandboxResources(harness.Ctx(t), &cri.UpdatePodSandboxResourcesRequest{PodSandboxId: pod, Resources: &cri.LinuxContainerResources{Unified: r.Unified, HugepageLimits: r.HugepageLimits}})
		wantCode(t, "UpdatePodSandboxResources with "+r.String(), err, codes.InvalidArgument, "")
	}
	if _, err := os.Lstat(marker); err == nil {
		t.Fatalf("a CRI request wrote %s outside the cgroup tree", marker)
	}
	if st := d.ContainerStatus(good); st.State != cri.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container %v after refused updates", st.State)
	}

	priv := harness.ContainerConfig("priv", img, "sleep", "1000")
	priv.Linux = &cri.LinuxContainerConfig{SecurityContext: &cri.LinuxContainerSecurityContext{Privileged: true}}
	_, err = d.CreateContainer(pod, podCfg, priv)
	wantCode(t, "privileged container in an unprivileged pod", err, codes.InvalidArgument, "no privileged container allowed in sandbox")

	// In a privileged pod it is fine.
	privPodCfg := d.PodConfig("privileged", func(c *cri.PodSandboxConfig) {
		c.Linux = &cri.LinuxPodSandboxConfig{SecurityContext: &cri.LinuxSandboxSecurityContext{Privileged: true}}
	})
	privPod := d.RunPod(privPodCfg)
	if _, err := d.CreateContainer(privPod, privPodCfg, priv); err != nil {
		t.Fatalf("privileged container in a privileged pod: %v", err)
	}
}

// pause and containers get their own oom_score_adj, never the daemon's:
// pause -998 clamped to what this host lets the daemon set (its own, 0
// here without CAP_SYS_RESOURCE), containers what they ask, clamped the
// same way, and 0 when they ask nothing. (The -999 of the systemd unit
// cannot be set on this host; the inheritance it would cause is covered by
// pkg/container's TestBuildSpecOOMScoreAdjNotInherited.)
func TestOOMScoreAdj(t *testing.T) {
	requireHost(t)
	own := oomScoreAdj(t, os.Getpid())
	if own != 0 {
		t.Skipf("the test process runs at oom_score_adj %d; the expectations below are for 0", own)
	}
	d := startDaemon(t, harness.Options{})
	img := d.Pull()
	podCfg := d.PodConfig("oom")
	pod := d.RunPod(podCfg)
	if got := oomScoreAdj(t, runcPid(t, d, pod)); got != 0 {
		t.Errorf("pause oom_score_adj %d, want -998 clamped to 0", got)
	}
	for _, tt := range []struct {
		name string
		ask  int64
		want int
	}{
		{"nothing", 0, 0},
		{"burstable", 500, 500},
		{"besteffort", 1000, 1000},
		{"guaranteed", -997, 0},
	} {
		cfg := harness.ContainerConfig("oom-"+tt.name, img, "sleep", "1000")
		if tt.ask != 0 {
			cfg.Linux = &cri.LinuxContainerConfig{Resources: &cri.LinuxContainerResources{OomScoreAdj: tt.ask}}
		}
		id := d.StartContainer(pod, podCfg, cfg)
		if got := oomScoreAdj(t, runcPid(t, d, id)); got != tt.want {
			t.Errorf("%s: oom_score_adj %d, want %d", tt.name, got, tt.want)
		}
	}
}

// A symlink planted where a container's log file goes is not followed:
// the start fails and the symlink's target is untouched.
func TestContainerLogSymlink(t *testing.T) {
	requireHost(t)
	d := startDaemon(t, harness.Options{})
	img := d.Pull()
	podCfg := d.PodConfig("logsym")
	pod := d.RunPod(podCfg)

	target := filepath.Join(t.TempDir(), "host-file")
	if err := os.WriteFile(target, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := harness.ContainerConfig("victim", img, "echo", "written through")
	if err := os.MkdirAll(podCfg.LogDirectory, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(podCfg.LogDirectory, cfg.LogPath)); err != nil {
		t.Fatal(err)
	}
	id, err := d.CreateContainer(pod, podCfg, cfg)
	if err == nil {
		_, err = d.RS.StartContainer(harness.Ctx(t), &cri.StartContainerRequest{ContainerId: id})
	}
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("container with a symlinked log file: %v; want a refusal naming the symbolic link", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious\n" {
		t.Fatalf("symlink target changed: %q", b)
	}
}

// max_container_log_line_size from config.toml reaches the monitors: a
// long line is split into P records of that size.
func TestMaxLogLineFromConfig(t *testing.T) {
	requireHost(t)
	const max = 2048
	d := startDaemon(t, harness.Options{Config: "max_container_log_line_size = 2048\n"})
	img := d.Pull()
	podCfg := d.PodConfig("longline")
	pod := d.RunPod(podCfg)
	cfg := harness.ContainerConfig("long", img, "sh", "-c", "head -c 5000 /dev/zero | tr '\\0' a; echo; echo after")
	id := d.StartContainer(pod, podCfg, cfg)
	harness.Eventually(t, "container exits", time.Minute, func() error {
		if st := d.ContainerStatus(id); st.State != cri.ContainerState_CONTAINER_EXITED {
			return status.Errorf(codes.Unavailable, "state %v", st.State)
		}
		return nil
	})
	data, err := os.ReadFile(filepath.Join(podCfg.LogDirectory, cfg.LogPath))
	if err != nil {
		t.Fatal(err)
	}
	var partial []int
	var full []string
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		f := strings.SplitN(line, " ", 4)
		if len(f) != 4 || f[1] != "stdout" {
			t.Fatalf("bad record %q", line)
		}
		if f[2] == "P" {
			partial = append(partial, len(f[3]))
		} else {
			full = append(full, f[3])
		}
	}
	if len(partial) != 5000/max || partial[0] != max || partial[1] != max {
		t.Fatalf("partial records of %v bytes, want %d of %d", partial, 5000/max, max)
	}
	if len(full) != 2 || len(full[0]) != 5000%max || full[1] != "after" {
		t.Fatalf("full records %q", full)
	}
}
