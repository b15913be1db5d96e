package sandbox

import (
	"testing"

	"github.com/pod-shim/pod-shim/pkg/runc"
)

// The pod's RuntimeClass handler picks the binary and root its monitor
// runs (and Direct deletes through). crun is plumbing only here: Debian's
// crun 1.8 refuses cgroup v1 hybrid hosts like this one.
func TestRuntimeOfHandler(t *testing.T) {
	handlers := runc.NewHandlers(runc.Handler{Binary: "/usr/sbin/runc", Root: "/run/ps/runc"},
		map[string]runc.Handler{"crun": {Binary: "/usr/bin/crun", Root: "/run/ps/runtimes/crun", Options: map[string]string{"systemd_cgroup": "true"}}})
	m := &Manager{opts: Options{Runtime: "/usr/sbin/runc", RuntimeRoot: "/run/ps/runc", Handlers: handlers, Direct: runc.New("/usr/sbin/runc", "/run/ps/runc")}}
	for _, tc := range []struct {
		handler, bin, root string
		systemd            bool
	}{
		{"", "/usr/sbin/runc", "/run/ps/runc", false},
		{"runc", "/usr/sbin/runc", "/run/ps/runc", false},
		{"crun", "/usr/bin/crun", "/run/ps/runtimes/crun", true},
	} {
		sb := &Sandbox{ID: "x", Config: Config{RuntimeHandler: tc.handler}}
		rt, err := m.runtimeOf(sb)
		if err != nil || rt.Binary() != tc.bin || rt.Root() != tc.root || rt.SystemdCgroup() != tc.systemd {
			t.Errorf("runtimeOf(%q) = %+v, %v", tc.handler, rt, err)
		}
		if d := m.directOf(sb); d.Binary() != tc.bin || d.Root() != tc.root {
			t.Errorf("directOf(%q) = %+v", tc.handler, d)
		}
	}
	if _, err := m.runtimeOf(&Sandbox{Config: Config{RuntimeHandler: "kata"}}); err == nil {
		t.Error("runtimeOf(kata) must fail: the handler is not configured")
	}
	bare := &Manager{opts: Options{Runtime: "/usr/sbin/runc", RuntimeRoot: "/r"}}
	if rt, err := bare.runtimeOf(&Sandbox{Config: Config{RuntimeHandler: "crun"}}); err != nil || rt.Binary() != "/usr/sbin/runc" {
		t.Errorf("no handler table: runtimeOf = %+v, %v; want the default runtime", rt, err)
	}
	if bare.directOf(&Sandbox{}) != nil {
		t.Error("directOf without Direct must be nil")
	}
}
