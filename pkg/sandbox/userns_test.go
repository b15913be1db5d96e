package sandbox

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/pod-shim/pod-shim/pkg/oci"
)

func TestValidateUserNS(t *testing.T) {
	m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 65536, Size: 65536}}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" = valid
	}{
		{"none", Config{}, ""},
		{"node", Config{UserNS: &UserNS{Mode: ModeNode}}, ""},
		{"pod", Config{UserNS: &UserNS{Mode: ModePod, UIDs: m, GIDs: m}}, ""},
		{"node with mappings", Config{UserNS: &UserNS{Mode: ModeNode, UIDs: m}}, "takes no id mappings"},
		{"container", Config{UserNS: &UserNS{Mode: ModeContainer}}, "CONTAINER is not supported"},
		{"target", Config{UserNS: &UserNS{Mode: ModeTarget}}, "TARGET is not supported"},
		{"no gid mapping", Config{UserNS: &UserNS{Mode: ModePod, UIDs: m}}, "needs a gid mapping"},
		{"two mappings", Config{UserNS: &UserNS{Mode: ModePod, UIDs: append(m, specs.LinuxIDMapping{ContainerID: 0, HostID: 1, Size: 1}), GIDs: m}}, "exactly one uid mapping"},
		{"root unmapped", Config{UserNS: &UserNS{Mode: ModePod, UIDs: m, GIDs: []specs.LinuxIDMapping{{ContainerID: 1, HostID: 65536, Size: 10}}}}, "must map container id 0"},
		{"empty", Config{UserNS: &UserNS{Mode: ModePod, UIDs: m, GIDs: []specs.LinuxIDMapping{{HostID: 65536}}}}, "length 0"},
		{"overflow", Config{UserNS: &UserNS{Mode: ModePod, UIDs: []specs.LinuxIDMapping{{HostID: 1<<32 - 10, Size: 65536}}, GIDs: m}}, "overflows"},
		{"host network", Config{UserNS: &UserNS{Mode: ModePod, UIDs: m, GIDs: m}, Namespaces: Namespaces{Network: ModeNode}}, "node's network"},
		{"host pid", Config{UserNS: &UserNS{Mode: ModePod, UIDs: m, GIDs: m}, Namespaces: Namespaces{PID: ModeNode}}, "node's network, PID or IPC"},
	} {
		err := validateUserNS(tc.cfg)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestUserNSPauseSpec(t *testing.T) {
	m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 131072, Size: 65536}}
	sb := &Sandbox{ID: "x", NetNSPath: "", Config: Config{UserNS: &UserNS{Mode: ModePod, UIDs: m, GIDs: m}}}
	s := oci.DefaultSpec("x")
	s.Process.User = specs.User{UID: pauseNobody, GID: pauseNobody}
	userNSPauseSpec(s, sb)
	ns := map[specs.LinuxNamespaceType]string{}
	for _, n := range s.Linux.Namespaces {
		ns[n.Type] = n.Path
	}
	if p, ok := ns[specs.UserNamespace]; !ok || p != "" {
		t.Errorf("user namespace %q %v, want a new one", p, ok)
	}
	if p, ok := ns[specs.NetworkNamespace]; !ok || p != "" {
		t.Errorf("network namespace %q %v, want a new one, owned by the user namespace", p, ok)
	}
	if len(s.Linux.UIDMappings) != 1 || s.Linux.UIDMappings[0] != m[0] || len(s.Linux.GIDMappings) != 1 {
		t.Errorf("mappings %v %v", s.Linux.UIDMappings, s.Linux.GIDMappings)
	}
	if s.Process.User.UID != pauseNobody {
		t.Errorf("pause runs as %d, want %d (mapped)", s.Process.User.UID, pauseNobody)
	}
	short := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 131072, Size: 1000}}
	sb.Config.UserNS = &UserNS{Mode: ModePod, UIDs: short, GIDs: short}
	s = oci.DefaultSpec("x")
	s.Process.User = specs.User{UID: pauseNobody, GID: pauseNobody}
	userNSPauseSpec(s, sb)
	if s.Process.User.UID != 0 || s.Process.User.GID != 0 {
		t.Errorf("with a 1000-id mapping pause runs as %+v, want the namespace's root", s.Process.User)
	}
	plain := oci.DefaultSpec("y")
	userNSPauseSpec(plain, &Sandbox{})
	for _, n := range plain.Linux.Namespaces {
		if n.Type == specs.UserNamespace {
			t.Error("a pod without user namespace got one")
		}
	}
}
