package network

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// CHECK passes on an attachment as ADD left it, after the libcni cache is
// lost (from the stored result), and fails once the pod's address is gone.
func TestCheck(t *testing.T) {
	tn := newTestNet(t, netOpts{loopback: true, portmap: true})
	m := tn.manager(t)
	ns := newTestNetNS(t, tn.dir, "pod")
	pod := tn.pod(t, ns)
	res, err := m.Setup(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Teardown(context.Background(), pod, res); err != nil {
			t.Error(err)
		}
	})
	if err := m.Check(context.Background(), pod, res); err != nil {
		t.Fatalf("Check right after Setup: %v", err)
	}
	if err := os.RemoveAll(filepath.Join(tn.cacheDir, "results")); err != nil {
		t.Fatal(err)
	}
	if err := tn.manager(t).Check(context.Background(), pod, res); err != nil {
		t.Fatalf("Check after the libcni cache was lost: %v", err)
	}

	// Take the pod's address away behind the plugins' back.
	h, err := netns.GetFromPath(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	eth0, addrs := nsLink(t, ns, "eth0")
	for _, a := range addrs {
		if a.IP.To4() != nil {
			if err := nl.AddrDel(eth0, &a); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := m.Check(context.Background(), pod, res); err == nil {
		t.Error("Check passed with the pod's address removed")
	} else {
		t.Logf("Check: %v", err)
	}

	if err := RemoveNetNS(ns); err != nil {
		t.Fatal(err)
	}
	if err := m.Check(context.Background(), pod, res); err == nil {
		t.Error("Check passed with the netns gone")
	}
}

// A config older than CNI 0.4.0 has no CHECK: nothing to fail.
func TestCheckUnsupportedVersion(t *testing.T) {
	needRoot(t)
	binDir := t.TempDir()
	log, _ := fakeStatusPlugin(t, binDir, "old03", `"0.3.1"`)
	confDir := t.TempDir()
	writeFile(t, filepath.Join(confDir, "10-old.conflist"), `{"cniVersion":"0.3.1","name":"old","plugins":[{"type":"old03"}]}`, 0o644)
	m, err := New(Options{ConfDir: confDir, BinDirs: []string{binDir}, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ns := newTestNetNS(t, t.TempDir(), "pod")
	if err := m.Check(context.Background(), Pod{ID: "abc", NetNS: ns}, &Result{Network: "old"}); err != nil {
		t.Errorf("Check of a 0.3.1 config: %v", err)
	}
	if c := calls(t, log); len(c) != 0 {
		t.Errorf("plugin run with %v", c)
	}
}
