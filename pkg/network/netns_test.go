package network

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, bridges and iptables rules")
	}
}

// newTestNetNS makes a netns that is removed when the test ends.
func newTestNetNS(t testing.TB, dir, name string) string {
	t.Helper()
	path, err := NewNetNS(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := RemoveNetNS(path); err != nil {
			t.Error(err)
		}
	})
	return path
}

// nsLink looks up a link inside the netns at path without moving any thread.
func nsLink(t *testing.T, path, name string) (netlink.Link, []netlink.Addr) {
	t.Helper()
	h, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	l, err := nl.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s in %s: %v", name, path, err)
	}
	addrs, err := nl.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	return l, addrs
}

func TestNetNS(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "netns") // created by NewNetNS
	path := newTestNetNS(t, dir, "pod1")

	if !isNetNS(path) {
		t.Fatalf("%s is not a pinned netns", path)
	}
	var self, pinned unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(path, &pinned); err != nil {
		t.Fatal(err)
	}
	if self.Ino == pinned.Ino {
		t.Fatal("pinned netns is the host's")
	}
	// The goroutine that unshares may land on the main thread, which Go
	// never discards; NewNetNS must keep it out of there every time.
	for i := range 10 {
		newTestNetNS(t, dir, "more"+itoa(i))
		var now unix.Stat_t
		if err := unix.Stat("/proc/self/ns/net", &now); err != nil {
			t.Fatal(err)
		}
		if now.Ino != self.Ino {
			t.Fatalf("main thread moved into a pod netns on call %d", i)
		}
	}
	lo, addrs := nsLink(t, path, "lo")
	if lo.Attrs().Flags&unix.IFF_UP == 0 {
		t.Errorf("lo is down in new netns: %v", lo.Attrs().Flags)
	}
	if len(addrs) == 0 {
		t.Error("lo has no address: it was not brought up")
	}

	// A name in use must not be pinned over, nor the holder disturbed.
	if _, err := NewNetNS(dir, "pod1"); !errors.Is(err, os.ErrExist) {
		t.Errorf("NewNetNS over existing = %v, want ErrExist", err)
	}
	if !isNetNS(path) {
		t.Error("failed NewNetNS disturbed the existing netns")
	}
	for _, bad := range []string{"", ".", "..", "a/b"} {
		if _, err := NewNetNS(dir, bad); err == nil {
			t.Errorf("NewNetNS(%q) succeeded", bad)
		}
	}
	// A failure must leave nothing: pinning onto a dir we can't create.
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewNetNS(filepath.Join(blocker, "sub"), "x"); err == nil {
		t.Error("NewNetNS under a file succeeded")
	}

	if err := RemoveNetNS(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns file left: %v", err)
	}
	if err := RemoveNetNS(path); err != nil {
		t.Errorf("second RemoveNetNS = %v", err)
	}
	// A file that was never mounted (crash between create and pin).
	stale := filepath.Join(dir, "stale")
	if err := os.WriteFile(stale, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := RemoveNetNS(stale); err != nil {
		t.Errorf("RemoveNetNS(unpinned file) = %v", err)
	}
}

func BenchmarkNewNetNS(b *testing.B) {
	needRoot(b)
	dir := b.TempDir()
	var paths []string
	b.Cleanup(func() {
		for _, p := range paths {
			RemoveNetNS(p)
		}
	})
	for i := 0; b.Loop(); i++ {
		p, err := NewNetNS(dir, "ns"+string(rune('a'+i%26))+itoa(i))
		if err != nil {
			b.Fatal(err)
		}
		paths = append(paths, p)
	}
}

func BenchmarkRemoveNetNS(b *testing.B) {
	needRoot(b)
	dir := b.TempDir()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		p, err := NewNetNS(dir, "ns"+itoa(i))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := RemoveNetNS(p); err != nil {
			b.Fatal(err)
		}
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
