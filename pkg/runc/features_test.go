package runc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseFeaturesUserNamespaces(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want Features
	}{
		{"runc 1.5", `{"mountOptions":["rro"],"linux":{"namespaces":["user","network"],"mountExtensions":{"idmap":{"enabled":true}}}}`,
			Features{RecursiveReadOnlyMounts: true, UserNamespaces: true}},
		{"runc 1.1: no mount extensions", `{"mountOptions":["rro"],"linux":{"namespaces":["user","network"]}}`,
			Features{RecursiveReadOnlyMounts: true}},
		{"idmap disabled", `{"linux":{"namespaces":["user"],"mountExtensions":{"idmap":{"enabled":false}}}}`, Features{}},
		{"idmap without user namespaces", `{"linux":{"namespaces":["network"],"mountExtensions":{"idmap":{"enabled":true}}}}`, Features{}},
		{"idmap enabled unknown", `{"linux":{"namespaces":["user"],"mountExtensions":{"idmap":{}}}}`, Features{}},
	} {
		if got := parseFeatures([]byte(tc.doc)); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// fakeRuntime writes a script answering `features` with doc.
func fakeRuntime(t *testing.T, doc string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "runtime")
	script := "#!/bin/sh\n[ \"$1\" = features ] || exit 1\ncat <<'X'\n" + doc + "\nX\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRequire(t *testing.T) {
	old := fakeRuntime(t, `{"mountOptions":["rro"]}`)
	cur := fakeRuntime(t, `{"mountOptions":["rro"],"linux":{"namespaces":["user"],"mountExtensions":{"idmap":{"enabled":true}}}}`)
	h := NewHandlers(Handler{Binary: old}, map[string]Handler{"runc-new": {Binary: cur}})
	ctx := context.Background()
	if err := h.Require(ctx, "runc-new", Features{UserNamespaces: true}); err != nil {
		t.Errorf("runc-new: %v", err)
	}
	err := h.Require(ctx, "", Features{UserNamespaces: true})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), `"default"`) ||
		!strings.Contains(err.Error(), old) || !strings.Contains(err.Error(), "user namespaces") {
		t.Errorf("default handler: %v", err)
	}
	if err := h.Require(ctx, "runc", Features{RecursiveReadOnlyMounts: true}); err != nil {
		t.Errorf("rro: %v", err)
	}
	got := h.Probe(ctx)
	if !got["runc-new"].UserNamespaces || got[""].UserNamespaces || got["runc"].UserNamespaces {
		t.Errorf("Probe = %+v", got)
	}
}

func TestReadFeaturesRealRunc(t *testing.T) {
	for _, bin := range []string{"/usr/sbin/runc", os.Getenv("POD_SHIM_RUNC")} {
		if bin == "" {
			continue
		}
		if _, err := exec.LookPath(bin); err != nil {
			t.Logf("%s: %v", bin, err)
			continue
		}
		f, err := ReadFeatures(context.Background(), bin)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %+v", bin, f)
		if bin == "/usr/sbin/runc" && f.UserNamespaces {
			t.Errorf("Debian's runc 1.1 has no idmapped mounts, yet reads as supporting user namespaces")
		}
	}
}
