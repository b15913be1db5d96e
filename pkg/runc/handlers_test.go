package runc

import (
	"errors"
	"reflect"
	"testing"
)

func TestHandlers(t *testing.T) {
	h := NewHandlers(Handler{Binary: "/usr/sbin/runc", Root: "/run/x/runc"},
		map[string]Handler{"crun": {Binary: "/usr/bin/crun", Root: "/run/x/crun"}})
	if got, want := h.Names(), []string{"", "crun", "runc"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names = %v, want %v", got, want)
	}
	for _, name := range []string{"", "runc"} {
		x, ok := h.Get(name)
		if !ok || x.Binary != "/usr/sbin/runc" || x.Name != name {
			t.Errorf("Get(%q) = %+v, %v; want the default runtime", name, x, ok)
		}
	}
	if x, ok := h.Get("crun"); !ok || x.Binary != "/usr/bin/crun" || x.Root != "/run/x/crun" {
		t.Errorf("Get(crun) = %+v, %v", x, ok)
	}
	if _, ok := h.Get("kata"); ok {
		t.Error("Get(kata) found an unconfigured handler")
	}
	var none *Handlers
	if _, ok := none.Get("runc"); !ok {
		t.Error("nil table must know the default handler")
	}
	if _, ok := none.Get("crun"); ok {
		t.Error("nil table knows crun")
	}
}

func TestParseFeatures(t *testing.T) {
	if f := parseFeatures([]byte(`{"mountOptions":["ro","rro","bind"]}`)); !f.RecursiveReadOnlyMounts {
		t.Errorf("rro not seen: %+v", f)
	}
	if f := parseFeatures([]byte(`{"mountOptions":["ro"]}`)); f.RecursiveReadOnlyMounts {
		t.Errorf("rro seen: %+v", f)
	}
	if f := parseFeatures([]byte(`garbage`)); f != (Features{}) {
		t.Errorf("garbage = %+v", f)
	}
}

// crun cannot run on this host (Debian's crun 1.8 refuses cgroup v1
// hybrid hosts), so its handler is tested as plumbing: the binary, root and
// options reach the go-runc command every call builds.
func TestFromHandlerCrun(t *testing.T) {
	h := Handler{Name: "crun", Binary: "/usr/bin/crun", Root: "/run/x/crun", Options: map[string]string{"systemd_cgroup": "true"}}
	rt := FromHandler(h)
	if rt.Binary() != "/usr/bin/crun" || rt.Root() != "/run/x/crun" || !rt.SystemdCgroup() {
		t.Fatalf("FromHandler = %+v", rt)
	}
	r := rt.runc("/tmp/log.json")
	if r.Command != "/usr/bin/crun" || r.Root != "/run/x/crun" || !r.SystemdCgroup || r.Log != "/tmp/log.json" {
		t.Errorf("go-runc command = %+v", r)
	}
	for _, v := range []string{"", "false", "0", "no"} {
		h.Options["systemd_cgroup"] = v
		if FromHandler(h).SystemdCgroup() {
			t.Errorf("systemd_cgroup %q turned on --systemd-cgroup", v)
		}
	}
	if off := rt.WithSystemdCgroup(false); off.SystemdCgroup() || !rt.SystemdCgroup() || off.Binary() != rt.Binary() {
		t.Errorf("WithSystemdCgroup must copy: %+v %+v", off, rt)
	}
}

// A "runc" entry replaces the default for "" too: the kubelet's default
// handler and "runc" must never be two runtimes.
func TestHandlersRuncEntryIsTheDefault(t *testing.T) {
	h := NewHandlers(Handler{Binary: "/usr/sbin/runc", Root: "/run/x/runc"},
		map[string]Handler{"runc": {Binary: "/opt/runc", Root: "/run/x/custom"}})
	for _, name := range []string{"", "runc"} {
		rt, err := h.Runtime(name)
		if err != nil || rt.Binary() != "/opt/runc" || rt.Root() != "/run/x/custom" {
			t.Errorf("Runtime(%q) = %+v, %v; want the [runtimes.runc] entry", name, rt, err)
		}
	}
	if got, want := h.Names(), []string{"", "runc"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names = %v, want %v", got, want)
	}
	if _, err := h.Runtime("kata"); !errors.Is(err, ErrUnknownHandler) {
		t.Errorf("Runtime(kata) = %v, want ErrUnknownHandler", err)
	}
	var none *Handlers
	if _, err := none.Runtime(""); !errors.Is(err, ErrUnknownHandler) {
		t.Errorf("nil table Runtime = %v: it has no binary to give", err)
	}
}
