package kubelet

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pod-shim/pod-shim/test/harness"
)

// TestKubeletUserNamespaces runs a hostUsers: false pod through a real
// kubelet. It has its own daemon, whose default handler is a runc with
// idmapped mounts (>= 1.2: POD_SHIM_RUNC, else hack/build-runc.sh's cached
// build), since the kubelet asks for user namespaces only of a handler
// whose Status says it has them. UserNamespacesSupport is GA (locked on)
// in 1.37, so no feature gate is set.
func TestKubeletUserNamespaces(t *testing.T) {
	runcNew := os.Getenv("POD_SHIM_RUNC")
	if runcNew == "" {
		cmd := exec.Command("bash", filepath.Join(harness.RepoRoot(), "hack", "build-runc.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("hack/build-runc.sh: %v", err)
		}
		runcNew = strings.TrimSpace(string(out))
	}
	// The harness runs the daemon with the runc PATH finds: put runc >=
	// 1.2 first for this test (not parallel, so the change is its own).
	link := filepath.Join(t.TempDir(), "runc")
	if err := os.Symlink(runcNew, link); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", filepath.Dir(link)+":"+os.Getenv("PATH"))
	e := setup(t)
	// A user-namespaced pod's root is an unprivileged host uid that must
	// reach its rootfs under the daemon's state dir, as under the default
	// /run/pod-shim (0711); the harness's temp dir is 0700.
	if err := os.Chmod(e.D.Base, 0o711); err != nil {
		t.Fatal(err)
	}

	name := "userns"
	// First run: write into the emptyDir as root, then exit 1; the kubelet
	// restarts the container, which then stays up.
	script := "cat /proc/self/uid_map; echo by-root > /data/by-root; " +
		"if [ -f /data/restarted ]; then echo restarted; " + idle + "; fi; touch /data/restarted; exit 1"
	w := e.apply(t, name, e.manifest(t, name, "  hostUsers: false\n"+podSpec("Always", dataVolume,
		"  containers:\n",
		ctr("app", script, mountData),
	)))
	p := e.waitPod(t, name, "Running after a restart", 3*time.Minute, func(p *Pod) error {
		c := p.Container("app")
		if p.Status.Phase != "Running" || c == nil || c.State.Running == nil || c.RestartCount < 1 {
			return harness.ErrNotYet
		}
		return nil
	})
	t.Logf("manifest → Running after one restart: %.2fs", time.Since(w).Seconds())
	app := p.Container("app")

	pid := e.runcPid(t, app.CRIID())
	uidMap, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(uidMap))
	if len(f) != 3 || f[0] != "0" || f[1] == "0" || f[2] != "65536" {
		t.Fatalf("container uid_map %q, want root mapped to a 64k range of unprivileged host ids", uidMap)
	}
	var base uint32
	fmt.Sscan(f[1], &base)
	if uid := hostUIDOf(t, pid); uid != base {
		t.Errorf("container process runs as host uid %d, want %d (its root's)", uid, base)
	}
	log := e.crictl(t, "logs", app.CRIID())
	if !strings.Contains(strings.Join(strings.Fields(log), " "), "0 "+f[1]+" 65536") || !strings.Contains(log, "restarted") {
		t.Errorf("log of the restarted container: %q", log)
	}

	// The kubelet's emptyDir, idmapped by the runtime: the container's
	// root wrote the file, the host sees root (not the mapped uid, not nobody).
	file := filepath.Join(e.Root, "kubelet", "pods", p.Metadata.UID, "volumes", "kubernetes.io~empty-dir", "data", "by-root")
	var st syscall.Stat_t
	if err := syscall.Stat(file, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 0 || st.Gid != 0 {
		t.Errorf("%s is %d:%d on the host, want 0:0", file, st.Uid, st.Gid)
	}

	sbs := e.sandboxes(t, name)
	e.deleteManifest(t, name)
	e.waitGone(t, name)
	harness.Eventually(t, "the pod's sandboxes removed", 90*time.Second, func() error {
		for _, s := range sbs {
			if st := e.sandboxState(t, s.ID); st == "SANDBOX_READY" {
				return fmt.Errorf("sandbox %s still %s", s.ID, st)
			}
		}
		return nil
	})
}

// hostUIDOf is the real uid of pid as the host sees it.
func hostUIDOf(t *testing.T, pid int) uint32 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "Uid:"); ok {
			var u uint32
			fmt.Sscan(v, &u)
			return u
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return 0
}
