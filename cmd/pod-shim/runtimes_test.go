package main

import (
	"testing"

	"github.com/pod-shim/pod-shim/pkg/config"
)

// A [runtimes.crun] table becomes a handler whose runtime the container
// manager (updates, deletes without a monitor) and the sandbox manager (the
// pod's monitor) use. Unit test only: Debian's crun 1.8 refuses cgroup v1
// hybrid hosts such as this VM and CI.
func TestRuntimeHandlersFromConfig(t *testing.T) {
	cfg := config.Default()
	cfg.State = "/run/ps"
	cfg.Runtimes = map[string]config.RuntimeHandler{
		"crun":  {Path: "/usr/bin/crun", Options: map[string]string{"systemd_cgroup": "true"}},
		"other": {Path: "/opt/other", Root: "/var/run/other"},
	}
	handlers := runtimeHandlers(cfg, "/usr/sbin/runc", "/run/ps/runc")
	h, ok := handlers.Get("crun")
	if !ok || h.Binary != "/usr/bin/crun" || h.Root != "/run/ps/runtimes/crun" || !h.SystemdCgroup() {
		t.Fatalf("crun handler = %+v, %v", h, ok)
	}
	if rt, err := handlers.Runtime("crun"); err != nil || rt.Binary() != "/usr/bin/crun" || rt.Root() != "/run/ps/runtimes/crun" || !rt.SystemdCgroup() {
		t.Fatalf("crun runtime = %+v", rt)
	}
	if h, _ := handlers.Get("other"); h.Root != "/var/run/other" {
		t.Errorf("explicit root lost: %+v", h)
	}
	if h, _ := handlers.Get(""); h.Binary != "/usr/sbin/runc" || h.Root != "/run/ps/runc" {
		t.Errorf("default handler = %+v", h)
	}
	if _, ok := handlers.Get("kata"); ok {
		t.Error("unconfigured handler found")
	}
}

// [runtimes.runc] moves the default handler too, in the table and and in the
// runtime the lookup gives: pause and containers share one runc root.
func TestRuntimeHandlersRuncEntry(t *testing.T) {
	cfg := config.Default()
	cfg.State = "/run/ps"
	cfg.Runtimes = map[string]config.RuntimeHandler{"runc": {Path: "/opt/runc", Root: "/run/ps/custom"}}
	handlers := runtimeHandlers(cfg, "/usr/sbin/runc", "/run/ps/runc")
	for _, name := range []string{"", "runc"} {
		h, ok := handlers.Get(name)
		if !ok || h.Root != "/run/ps/custom" {
			t.Errorf("handler %q = %+v, want root /run/ps/custom", name, h)
		}
		if rt, err := handlers.Runtime(name); err != nil || rt.Root() != "/run/ps/custom" {
			t.Errorf("runtime %q = %+v, want root /run/ps/custom", name, rt)
		}
	}
}
