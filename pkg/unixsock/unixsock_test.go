package unixsock

import (
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestListenModeIgnoresUmask(t *testing.T) {
	for _, mask := range []int{0o000, 0o022, 0o077} {
		old := syscall.Umask(mask)
		dir := t.TempDir()
		path := filepath.Join(dir, "x.sock")
		lis, err := Listen(path, 0o600)
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
			t.Errorf("umask %03o: mode %v, want socket 0600", mask, fi.Mode())
		}
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		c.Close()
		lis.Close()
	}
}

func TestListenReplacesStaleSocketOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.sock")
	first, err := Listen(path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	// A crashed daemon leaves its socket file behind: make one by hand.
	first.UnixListener.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatal(err)
	}
	second, err := Listen(path, 0o660)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	second.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket left after Close: %v", err)
	}

	file := filepath.Join(dir, "regular")
	if err := os.WriteFile(file, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := Listen(file, 0o600); err == nil {
		l.Close()
		t.Fatal("a regular file was replaced by a socket")
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Fatalf("regular file changed: %q", b)
	}
}

// A listener's Close leaves alone a socket that a successor put at its path.
func TestCloseKeepsSuccessorsSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.sock")
	first, err := Listen(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Listen(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	first.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("successor's socket gone after the first listener closed: %v", err)
	}
	c.Close()
}

// Whatever the umask takes away, the final mode is the one asked for.
func TestListenModeWiderThanUmask(t *testing.T) {
	old := syscall.Umask(0o027)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "x.sock")
	l, err := Listen(path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if fi, _ := os.Lstat(path); fi.Mode().Perm() != 0o660 {
		t.Fatalf("mode %v, want 0660", fi.Mode())
	}
}

func TestPeerCred(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.sock")
	lis, err := Listen(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		c, err := net.Dial("unix", path)
		if err == nil {
			defer c.Close()
			var b [1]byte
			c.Read(b[:])
		}
	}()
	c, err := lis.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cred, err := PeerCred(c)
	if err != nil {
		t.Fatal(err)
	}
	if int(cred.Uid) != os.Getuid() || int(cred.Pid) != os.Getpid() {
		t.Fatalf("cred %+v, want uid %d pid %d", cred, os.Getuid(), os.Getpid())
	}
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"/run/pod-shim/pod-shim.sock", "/run/pod-shim/pod-shim.sock", true},
		{"unix:///run/x.sock", "/run/x.sock", true},
		{"unix:///run//a/../x.sock", "/run/x.sock", true},
		{"relative/x.sock", "relative/x.sock", true},
		{"x.sock", "x.sock", true},
		{"/run/a:b.sock", "/run/a:b.sock", true},
		{"", "", false},
		{"unix://", "", false},
		{"unix://run/x.sock", "", false},
		{"unix:/run/x.sock", "", false},
		{"unix:run/x.sock", "", false},
		{"tcp://127.0.0.1:1234", "", false},
		{"npipe:////./pipe/x", "", false},
		{"localhost:1234", "", false},
		{"unix:///run/x.sock?mode=0777", "", false},
		{"/run/x\x00.sock", "", false},
	}
	for _, tt := range tests {
		got, err := ParseEndpoint(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseEndpoint(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
