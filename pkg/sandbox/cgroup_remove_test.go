package sandbox

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pod-shim/pod-shim/pkg/oci"
)

// A v1 layout in a temp dir: the parent is partly there in one hierarchy,
// absent in another, and a symlinked hierarchy is not counted twice.
func TestPodCgroupDirs(t *testing.T) {
	root := t.TempDir()
	old := cgroupRoot
	cgroupRoot = root
	t.Cleanup(func() { cgroupRoot = old })
	for _, d := range []string{"memory/kubepods", "cpu,cpuacct", "unified"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("cpu,cpuacct", filepath.Join(root, "cpu")); err != nil {
		t.Fatal(err)
	}
	m := &Manager{opts: Options{CgroupDriver: "cgroupfs"}, log: slog.New(slog.DiscardHandler)}

	got := m.podCgroupDirs(Config{CgroupParent: "kubepods/pod1"})
	want := []string{
		filepath.Join(root, "cpu,cpuacct/kubepods/pod1"), filepath.Join(root, "cpu,cpuacct/kubepods"),
		filepath.Join(root, "memory/kubepods/pod1"),
		filepath.Join(root, "unified/kubepods/pod1"), filepath.Join(root, "unified/kubepods"),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("podCgroupDirs = %v\nwant %v", got, want)
	}
	for _, c := range []Config{{}, {CgroupParent: "/"}} {
		if got := m.podCgroupDirs(c); got != nil {
			t.Errorf("podCgroupDirs(%q) = %v, want none (the shared default parent)", c.CgroupParent, got)
		}
	}
	sd := &Manager{opts: Options{CgroupDriver: "systemd"}}
	if got := sd.podCgroupDirs(Config{CgroupParent: "kubepods-pod1.slice"}); got != nil {
		t.Errorf("systemd driver: %v, want none", got)
	}

	// What runc would make; then one hierarchy keeps a child (another pod).
	for _, d := range want {
		os.MkdirAll(d, 0o755)
	}
	busy := filepath.Join(root, "memory/kubepods/pod1/other")
	os.MkdirAll(busy, 0o755)
	m.removePodCgroups(&Sandbox{ID: "x", CreatedCgroups: want})
	for _, d := range want {
		_, err := os.Stat(d)
		if d == filepath.Join(root, "memory/kubepods/pod1") {
			if err != nil {
				t.Errorf("%s removed while it held a child", d)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s left", d)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "memory/kubepods")); err != nil {
		t.Error("a parent that existed before the pod was removed")
	}
	m.removePodCgroups(&Sandbox{ID: "x", CreatedCgroups: want}) // again: no panic, no error
}

// On v2 the one unified tree is the only hierarchy, whatever dirs it has.
func TestPodCgroupDirsV2(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "kubepods.slice"), 0o755)
	os.MkdirAll(filepath.Join(root, "system.slice"), 0o755)
	h := oci.HierarchiesUnder(root, true)
	if !slices.Equal(h, []string{root}) {
		t.Fatalf("hierarchies %v", h)
	}
	got := newCgroupDirs(h, "/pods/p1")
	want := []string{filepath.Join(root, "pods/p1"), filepath.Join(root, "pods")}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := newCgroupDirs(h, "/kubepods.slice"); got != nil {
		t.Errorf("existing parent: %v", got)
	}
}
