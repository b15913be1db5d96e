package container

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/pod-shim/pod-shim/pkg/oci"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

func TestApplyUserNS(t *testing.T) {
	pod := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 196608, Size: 65536}}
	vol := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 196608, Size: 100}}
	sb := &sandbox.Sandbox{ID: "p", Dir: "/run/ps/pods/p", PausePID: 4242,
		Config: sandbox.Config{UserNS: &sandbox.UserNS{Mode: sandbox.ModePod, UIDs: pod, GIDs: pod}}}
	c := &Config{Mounts: []Mount{
		{ContainerPath: "/data", HostPath: "/var/lib/k/data", UIDMappings: vol, GIDMappings: vol},
		{ContainerPath: "/host", HostPath: "/srv"},
	}}
	s := oci.DefaultSpec("c")
	mounts, err := podMounts(c, sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Mounts = append(s.Mounts, mounts...)
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/img", Type: "bind", Source: "/var/lib/ps/vol/x/sub"})
	applyUserNS(s, c, sb, map[string]string{"/img": "/var/lib/ps/vol/x"})

	got := map[string][]specs.LinuxIDMapping{}
	for _, m := range s.Mounts {
		got[m.Destination] = m.UIDMappings
	}
	for dst, want := range map[string][]specs.LinuxIDMapping{
		"/data": vol, "/host": nil, "/etc/hosts": pod, "/etc/hostname": pod, "/etc/resolv.conf": pod,
		"/dev/shm": pod, "/img": pod, "/proc": nil,
	} {
		if len(got[dst]) != len(want) || len(want) > 0 && got[dst][0] != want[0] {
			t.Errorf("%s: uid mappings %v, want %v", dst, got[dst], want)
		}
	}
	var userns string
	for _, n := range s.Linux.Namespaces {
		if n.Type == specs.UserNamespace {
			userns = n.Path
		}
	}
	if userns != "/proc/4242/ns/user" || len(s.Linux.UIDMappings) != 1 || s.Linux.GIDMappings[0] != pod[0] {
		t.Errorf("user namespace %q, mappings %v %v", userns, s.Linux.UIDMappings, s.Linux.GIDMappings)
	}

	// Without a pod user namespace only CRI mappings are honoured.
	plain := &sandbox.Sandbox{ID: "q", Dir: "/run/ps/pods/q", PausePID: 1}
	s = oci.DefaultSpec("d")
	mounts, _ = podMounts(c, plain, nil)
	s.Mounts = append(s.Mounts, mounts...)
	applyUserNS(s, c, plain, nil)
	for _, m := range s.Mounts {
		if (m.Destination == "/data") != (len(m.UIDMappings) > 0) {
			t.Errorf("%s: mappings %v without a pod user namespace", m.Destination, m.UIDMappings)
		}
	}
	for _, n := range s.Linux.Namespaces {
		if n.Type == specs.UserNamespace {
			t.Error("user namespace without POD mode")
		}
	}
}

func TestHostID(t *testing.T) {
	m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 10}}
	if hostID(m, 0) != 1000 || hostID(m, 9) != 1009 || hostID(m, 10) != 65534 {
		t.Errorf("hostID: %d %d %d", hostID(m, 0), hostID(m, 9), hostID(m, 10))
	}
}
