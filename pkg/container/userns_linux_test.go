package container

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// TestIdmapRootfs remounts a real overlay over idmapped layers, as for a
// pod's container, with a sleeping process in a new user namespace
// standing in for pause; then checks the same through withAttached, the
// path kernels before 6.15 take.
func TestIdmapRootfs(t *testing.T) {
	if os.Getuid() != 0 || testing.Short() {
		t.Skip("needs root (overlay and idmapped mounts)")
	}
	const base = 3 << 16
	holder := exec.Command("sleep", "60")
	holder.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: base, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: base, Size: 65536}},
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: base, Size: 65536}}
	sb := &sandbox.Sandbox{PausePID: holder.Process.Pid, Config: sandbox.Config{UserNS: &sandbox.UserNS{Mode: sandbox.ModePod, UIDs: m, GIDs: m}}}

	for _, attached := range []bool{false, true} {
		dir := t.TempDir()
		lower, cdir := filepath.Join(dir, "layer"), filepath.Join(dir, "c")
		upper, work := filepath.Join(cdir, "upper"), filepath.Join(cdir, "work")
		rootfs := filepath.Join(dir, "state", "containers", "id", "rootfs")
		for _, d := range []string{lower, upper, work, rootfs} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(lower, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("overlay", rootfs, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Unmount(rootfs, unix.MNT_DETACH) })
		if attached {
			// The fallback on its own: attach an idmapped tree, list it.
			userns, _ := os.Open("/proc/" + strconv.Itoa(holder.Process.Pid) + "/ns/user")
			fd, err := idmapTree(lower, int(userns.Fd()))
			userns.Close()
			if err != nil {
				t.Fatal(err)
			}
			tmp := filepath.Join(dir, "idmap")
			err = withAttached(tmp, []int{fd}, func(paths []string) error {
				var st syscall.Stat_t
				if err := syscall.Stat(filepath.Join(paths[0], "f"), &st); err != nil {
					return err
				}
				if st.Uid != base {
					t.Errorf("attached idmapped layer: f is uid %d on the host, want %d", st.Uid, base)
				}
				return nil
			})
			unix.Close(fd)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(tmp); !os.IsNotExist(err) {
				t.Errorf("withAttached left %s: %v", tmp, err)
			}
			continue
		}
		if err := idmapRootfs(rootfs, sb); err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(rootfs, "f"), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != base || st.Gid != base {
			t.Errorf("image file through the idmapped rootfs: %d:%d on the host, want %d (the pod's root)", st.Uid, st.Gid, base)
		}
		if err := syscall.Stat(rootfs, &st); err != nil || st.Uid != base {
			t.Errorf("rootfs / is uid %d (%v), want %d", st.Uid, err, base)
		}
		if err := syscall.Stat(filepath.Join(lower, "f"), &st); err != nil || st.Uid != 0 {
			t.Errorf("the layer itself changed: uid %d (%v)", st.Uid, err)
		}
	}
}
