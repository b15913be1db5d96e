package sandbox

import (
	"context"
	"testing"

	"github.com/pod-shim/pod-shim/pkg/runc"
)

// The pod's RuntimeClass handler picks the binary and root its monitor
// runs (and direct deletes use). crun is plumbing only here: Debian's
// crun 1.8 refuses cgroup v1 hybrid hosts like this one.
func TestRuntimeOfHandler(t *testing.T) {
	handlers := runc.NewHandlers(runc.Handler{Binary: "/usr/sbin/runc", Root: "/run/ps/runc"},
		map[string]runc.Handler{"crun": {Binary: "/usr/bin/crun", Root: "/run/ps/runtimes/crun", Options: map[string]string{"systemd_cgroup": "true"}}})
	env := newTestEnv(t, func(o *Options) {
		o.Handlers = handlers
		o.Direct = runc.New("/usr/sbin/runc", "/run/ps/runc")
	})
	m := env.m
	for _, tc := range []struct {
		handler, bin, root string
		systemd            bool
	}{
		{"", "/usr/sbin/runc", "/run/ps/runc", false},
		{"runc", "/usr/sbin/runc", "/run/ps/runc", false},
		{"crun", "/usr/bin/crun", "/run/ps/runtimes/crun", true},
	} {
		sb := &Sandbox{ID: "x", Config: Config{RuntimeHandler: tc.handler}}
		rt, err := m.Runtime(sb)
		if err != nil || rt.Binary() != tc.bin || rt.Root() != tc.root || rt.SystemdCgroup() != tc.systemd {
			t.Errorf("Runtime(%q) = %+v, %v", tc.handler, rt, err)
		}
		if d, ok := m.directOf(sb).(*runc.Runtime); !ok || d.Binary() != tc.bin || d.Root() != tc.root {
			t.Errorf("directOf(%q) = %+v", tc.handler, d)
		}
	}
	if _, err := m.Runtime(&Sandbox{Config: Config{RuntimeHandler: "kata"}}); err == nil {
		t.Error("Runtime(kata) must fail: the handler is not configured")
	}
	bare := newTestEnv(t, func(o *Options) { o.Runtime, o.RuntimeRoot = "/usr/sbin/runc", "/r" }).m
	if rt, err := bare.Runtime(&Sandbox{}); err != nil || rt.Binary() != "/usr/sbin/runc" || rt.Root() != "/r" {
		t.Errorf("no handler table: Runtime = %+v, %v; want the default runtime", rt, err)
	}
	if _, err := bare.Runtime(&Sandbox{Config: Config{RuntimeHandler: "crun"}}); err == nil {
		t.Error("no handler table: Runtime(crun) must fail, not fall back to the default")
	}
	if bare.directOf(&Sandbox{}) != nil {
		t.Error("directOf without Direct must be nil")
	}
}

// A [runtimes.runc] entry that moves runc's root: a pod of the default
// handler ("") and one asking for "runc" run their pause under it, and the
// container manager, which asks Runtime for a pod's containers, finds the
// same root. Before, "" kept the daemon's default root while containers
// looked "runc" up in their own table: one pod across two runc roots.
func TestRuncEntryGivesPauseAndContainersOneRoot(t *testing.T) {
	const root = "/run/ps/custom-runc"
	handlers := runc.NewHandlers(runc.Handler{Binary: "/usr/sbin/runc", Root: "/run/ps/runc"},
		map[string]runc.Handler{"runc": {Binary: "/usr/local/sbin/runc", Root: root}})
	env := newTestEnv(t, func(o *Options) { o.Handlers = handlers })
	for _, handler := range []string{"", "runc"} {
		cfg := podConfig("pod-" + handler)
		cfg.RuntimeHandler = handler
		sb, err := env.m.Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		mon := env.monitors.of(sb.Dir)
		if mon.root != root || mon.runtime != "/usr/local/sbin/runc" {
			t.Errorf("handler %q: pause runs under %s --root %s, want /usr/local/sbin/runc --root %s", handler, mon.runtime, mon.root, root)
		}
		rt, err := env.m.Runtime(sb)
		if err != nil || rt.Root() != root || rt.Binary() != "/usr/local/sbin/runc" {
			t.Errorf("handler %q: containers' runtime = %+v, %v; want root %s", handler, rt, err, root)
		}
	}
}
