package runc

import (
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
