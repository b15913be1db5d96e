package oci_test

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/pod-shim/pod-shim/pkg/oci"
)

// containerd's default capability set for unprivileged containers.
var containerdCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func nsTypes(s *specs.Spec) []specs.LinuxNamespaceType {
	var out []specs.LinuxNamespaceType
	for _, ns := range s.Linux.Namespaces {
		out = append(out, ns.Type)
	}
	return out
}

func TestDefaultSpec(t *testing.T) {
	s := oci.DefaultSpec("id")
	if len(containerdCaps) != 14 {
		t.Fatal("test table broken")
	}
	c := s.Process.Capabilities
	for name, got := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
		if !reflect.DeepEqual(sorted(got), sorted(containerdCaps)) {
			t.Errorf("%s caps = %v, want %v", name, got, containerdCaps)
		}
	}
	if len(c.Inheritable) != 0 || len(c.Ambient) != 0 {
		t.Errorf("inheritable/ambient caps must be empty: %v %v", c.Inheritable, c.Ambient)
	}
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware", "/proc/acpi", "/proc/scsi"} {
		if !slices.Contains(s.Linux.MaskedPaths, p) {
			t.Errorf("masked paths lack %s", p)
		}
	}
	for _, p := range []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"} {
		if !slices.Contains(s.Linux.ReadonlyPaths, p) {
			t.Errorf("readonly paths lack %s", p)
		}
	}
	wantNS := []specs.LinuxNamespaceType{specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace, specs.NetworkNamespace}
	if got := nsTypes(s); !reflect.DeepEqual(sorted(toStrings(got)), sorted(toStrings(wantNS))) {
		t.Errorf("namespaces = %v, want %v", got, wantNS)
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Path != "" {
			t.Errorf("namespace %s has path %q, want new", ns.Type, ns.Path)
		}
	}
	if s.Version != specs.Version || s.Process.Cwd != "/" || s.Root == nil {
		t.Errorf("version/cwd/root: %q %q %v", s.Version, s.Process.Cwd, s.Root)
	}
	if !slices.Contains(s.Process.Env, oci.DefaultPath) {
		t.Errorf("env %v lacks default PATH", s.Process.Env)
	}
	dests := map[string]bool{}
	for _, m := range s.Mounts {
		dests[m.Destination] = true
	}
	for _, d := range []string{"/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup"} {
		if !dests[d] {
			t.Errorf("no %s mount", d)
		}
	}
	if d := s.Linux.Resources.Devices; len(d) == 0 || d[0].Allow || d[0].Access != "rwm" {
		t.Errorf("device cgroup must start by denying all: %+v", d)
	}

	// Specs are independent: changing one must not change the defaults.
	s.Linux.MaskedPaths[0] = "/changed"
	s.Process.Capabilities.Bounding[0] = "CAP_CHANGED"
	s2 := oci.DefaultSpec("id2")
	if s2.Linux.MaskedPaths[0] == "/changed" || slices.Contains(s2.Process.Capabilities.Bounding, "CAP_CHANGED") ||
		slices.Contains(oci.DefaultCapabilities, "CAP_CHANGED") {
		t.Error("DefaultSpec shares slices with the package defaults")
	}
}

func toStrings(ns []specs.LinuxNamespaceType) []string {
	var out []string
	for _, n := range ns {
		out = append(out, string(n))
	}
	return out
}

func TestSetAndRemoveNamespace(t *testing.T) {
	s := oci.DefaultSpec("id")
	n := len(s.Linux.Namespaces)

	oci.SetNamespace(s, specs.NetworkNamespace, "/run/netns/x")
	if len(s.Linux.Namespaces) != n {
		t.Fatalf("SetNamespace of an existing type added one: %v", s.Linux.Namespaces)
	}
	if got := path(s, specs.NetworkNamespace); got != "/run/netns/x" {
		t.Fatalf("network path = %q", got)
	}
	oci.SetNamespace(s, specs.NetworkNamespace, "")
	if got := path(s, specs.NetworkNamespace); got != "" {
		t.Fatalf("network path after reset = %q", got)
	}

	oci.RemoveNamespace(s, specs.NetworkNamespace)
	if slices.Contains(nsTypes(s), specs.NetworkNamespace) || len(s.Linux.Namespaces) != n-1 {
		t.Fatalf("after remove: %v", s.Linux.Namespaces)
	}
	oci.RemoveNamespace(s, specs.NetworkNamespace) // absent: no-op
	if len(s.Linux.Namespaces) != n-1 {
		t.Fatalf("removing an absent namespace changed the list: %v", s.Linux.Namespaces)
	}

	oci.SetNamespace(s, specs.CgroupNamespace, "/proc/1/ns/cgroup")
	if len(s.Linux.Namespaces) != n || path(s, specs.CgroupNamespace) != "/proc/1/ns/cgroup" {
		t.Fatalf("SetNamespace of a new type: %v", s.Linux.Namespaces)
	}
}

func path(s *specs.Spec, t specs.LinuxNamespaceType) string {
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == t {
			return ns.Path
		}
	}
	return "<absent>"
}

func TestCgroupsPath(t *testing.T) {
	tests := []struct{ driver, parent, id, want string }{
		{"cgroupfs", "", "abc", "/pod-shim/abc"},
		{"cgroupfs", "/kubepods/besteffort/pod123", "abc", "/kubepods/besteffort/pod123/abc"},
		{"cgroupfs", "/kubepods/burstable/pod1/", "abc", "/kubepods/burstable/pod1/abc"},
		{"", "/kubepods", "abc", "/kubepods/abc"},
		{"systemd", "kubepods-besteffort-podX.slice", "abc", "kubepods-besteffort-podX.slice:pod-shim:abc"},
		{"systemd", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podX.slice", "abc", "kubepods-besteffort-podX.slice:pod-shim:abc"},
		{"systemd", "", "abc", "system.slice:pod-shim:abc"},
		{"systemd", "/not/a/slice", "abc", "system.slice:pod-shim:abc"},
	}
	for _, tt := range tests {
		if got := oci.CgroupsPath(tt.driver, tt.parent, tt.id); got != tt.want {
			t.Errorf("CgroupsPath(%q, %q, %q) = %q, want %q", tt.driver, tt.parent, tt.id, got, tt.want)
		}
	}
}

func TestBundleRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "bundle")
	s := oci.DefaultSpec("id")
	s.Process.Args = []string{"/bin/sh", "-c", "echo hi"}
	s.Hostname = "pod"
	s.Linux.CgroupsPath = "/pod-shim/id"
	oci.SetNamespace(s, specs.NetworkNamespace, "/run/netns/x")
	if err := oci.WriteBundle(dir, s); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("config.json mode %v is readable by others", fi.Mode())
	}
	got, err := oci.ReadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, s)
	}

	if _, err := oci.ReadBundle(t.TempDir()); err == nil {
		t.Error("ReadBundle of an empty dir succeeded")
	}
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "config.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := oci.ReadBundle(bad); err == nil {
		t.Error("ReadBundle of a corrupt config.json succeeded")
	}
}
