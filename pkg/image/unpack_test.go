package image

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tarEntry describes one entry of a test layer.
type tarEntry struct {
	name     string
	typ      byte
	mode     int64
	data     string
	link     string
	uid, gid int
	major    int64
	minor    int64
	xattrs   map[string]string
}

var testMtime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

func buildTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link,
			Uid: e.uid, Gid: e.gid, Devmajor: e.major, Devminor: e.minor,
			ModTime: testMtime, Format: tar.FormatPAX,
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if len(e.xattrs) > 0 {
			h.PAXRecords = map[string]string{}
			for k, v := range e.xattrs {
				h.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: unpacking sets ownership, device nodes and trusted.* xattrs")
	}
}

func TestUnpackLayer(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name    string
		entries []tarEntry
		wantErr string
		check   func(t *testing.T, root, outside string)
	}{
		{
			name: "file types, ownership, modes, xattrs, times",
			entries: []tarEntry{
				{name: "bin/", typ: tar.TypeDir, mode: 0o755},
				{name: "bin/busybox", typ: tar.TypeReg, mode: 0o755, data: "bb", uid: 1000, gid: 1001},
				{name: "bin/su", typ: tar.TypeReg, mode: 0o4755, data: "su"},
				{name: "bin/sh", typ: tar.TypeSymlink, link: "busybox"},
				{name: "bin/ln", typ: tar.TypeLink, link: "bin/busybox"},
				{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
				{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
				{name: "dev/loop9", typ: tar.TypeBlock, mode: 0o660, major: 7, minor: 9},
				{name: "dev/fifo", typ: tar.TypeFifo, mode: 0o600},
				{name: "etc/x", typ: tar.TypeReg, data: "x", xattrs: map[string]string{"user.pod-shim": "yes"}},
			},
			check: func(t *testing.T, root, _ string) {
				st := lstat(t, filepath.Join(root, "bin/busybox"))
				if st.Uid != 1000 || st.Gid != 1001 || st.Mode&0o7777 != 0o755 || st.Nlink != 2 {
					t.Errorf("busybox: uid %d gid %d mode %o nlink %d", st.Uid, st.Gid, st.Mode&0o7777, st.Nlink)
				}
				if ln := lstat(t, filepath.Join(root, "bin/ln")); ln.Ino != st.Ino {
					t.Errorf("hard link has inode %d, target %d", ln.Ino, st.Ino)
				}
				if m := lstat(t, filepath.Join(root, "bin/su")).Mode & 0o7777; m != 0o4755 {
					t.Errorf("setuid file mode %o", m)
				}
				if m := lstat(t, filepath.Join(root, "tmp")).Mode & 0o7777; m != 0o1777 {
					t.Errorf("sticky dir mode %o", m)
				}
				if l, err := os.Readlink(filepath.Join(root, "bin/sh")); err != nil || l != "busybox" {
					t.Errorf("symlink: %q %v", l, err)
				}
				if d := lstat(t, filepath.Join(root, "dev/null")); d.Mode&unix.S_IFMT != unix.S_IFCHR || d.Rdev != unix.Mkdev(1, 3) {
					t.Errorf("char dev: mode %o rdev %d", d.Mode, d.Rdev)
				}
				if d := lstat(t, filepath.Join(root, "dev/loop9")); d.Mode&unix.S_IFMT != unix.S_IFBLK || d.Rdev != unix.Mkdev(7, 9) {
					t.Errorf("block dev: mode %o rdev %d", d.Mode, d.Rdev)
				}
				if d := lstat(t, filepath.Join(root, "dev/fifo")); d.Mode&unix.S_IFMT != unix.S_IFIFO {
					t.Errorf("fifo: mode %o", d.Mode)
				}
				buf := make([]byte, 16)
				if n, err := unix.Lgetxattr(filepath.Join(root, "etc/x"), "user.pod-shim", buf); err != nil || string(buf[:n]) != "yes" {
					t.Errorf("xattr: %q %v", buf[:n], err)
				}
				for _, p := range []string{"bin", "bin/busybox", "tmp"} {
					if mt := lstat(t, filepath.Join(root, p)).Mtim; mt.Sec != testMtime.Unix() {
						t.Errorf("%s mtime %d, want %d", p, mt.Sec, testMtime.Unix())
					}
				}
			},
		},
		{
			name: "whiteouts become overlayfs whiteouts",
			entries: []tarEntry{
				{name: "etc/.wh.passwd", typ: tar.TypeReg},
				{name: "var/lib/", typ: tar.TypeDir, mode: 0o755},
				{name: "var/lib/.wh..wh..opq", typ: tar.TypeReg},
				{name: ".wh..wh.plnk", typ: tar.TypeDir},
			},
			check: func(t *testing.T, root, _ string) {
				st := lstat(t, filepath.Join(root, "etc/passwd"))
				if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
					t.Errorf("whiteout: mode %o rdev %d", st.Mode, st.Rdev)
				}
				buf := make([]byte, 4)
				if n, err := unix.Lgetxattr(filepath.Join(root, "var/lib"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
					t.Errorf("opaque xattr: %q %v", buf[:n], err)
				}
				for _, p := range []string{"etc/.wh.passwd", "var/lib/.wh..wh..opq", ".wh..wh.plnk"} {
					if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
						t.Errorf("%s exists", p)
					}
				}
			},
		},
		{
			name: "dot-dot cannot climb out",
			entries: []tarEntry{
				{name: "../../escape", typ: tar.TypeReg, data: "x"},
			},
			check: func(t *testing.T, root, outside string) {
				if _, err := os.Stat(filepath.Join(root, "escape")); err != nil {
					t.Errorf("entry not kept inside the layer: %v", err)
				}
				assertEmpty(t, outside)
			},
		},
		{
			name: "symlinked parent resolves inside the layer",
			entries: []tarEntry{
				{name: "sub/", typ: tar.TypeDir, mode: 0o755},
				{name: "esc", typ: tar.TypeSymlink, link: "../../sub"},
				{name: "esc/file", typ: tar.TypeReg, data: "x"},
				{name: "abs", typ: tar.TypeSymlink, link: "/"},
				{name: "abs/file2", typ: tar.TypeReg, data: "y"},
			},
			check: func(t *testing.T, root, outside string) {
				assertEmpty(t, outside)
				for _, p := range []string{"sub/file", "file2"} {
					if _, err := os.Stat(filepath.Join(root, p)); err != nil {
						t.Errorf("%s not inside the layer: %v", p, err)
					}
				}
			},
		},
		{
			name: "dangling symlinked parent fails",
			entries: []tarEntry{
				{name: "esc", typ: tar.TypeSymlink, link: "../outside"},
				{name: "esc/file", typ: tar.TypeReg, data: "x"},
			},
			wantErr: `parent "esc"`,
		},
		{
			name: "implicit parent swapped for a symlink",
			entries: []tarEntry{
				{name: "a/b/c", typ: tar.TypeReg, data: "first"},
				{name: "a/b", typ: tar.TypeSymlink, link: "../../outside"},
				{name: "a/b/pwned", typ: tar.TypeReg, data: "x"},
			},
			wantErr: `parent "a/b"`,
		},
		{
			// The parent-swap: "a" and "a/outside" are made implicitly, then
			// "a" becomes a symlink that, followed on the host, leads to the
			// layer dir's sibling. Inside the root ".." is the root itself.
			name: "implicit grandparent swapped for a symlink",
			entries: []tarEntry{
				{name: "a/outside/c", typ: tar.TypeReg, data: "first"},
				{name: "a", typ: tar.TypeSymlink, link: ".."},
				{name: "a/outside/pwned", typ: tar.TypeReg, data: "x"},
				{name: "a/outside/.wh.victim", typ: tar.TypeReg},
				{name: "a/outside/hl", typ: tar.TypeLink, link: "a/outside/pwned"},
				{name: "a/outside/.wh..wh..opq", typ: tar.TypeReg},
			},
			check: func(t *testing.T, root, outside string) {
				assertEmpty(t, outside)
				for _, p := range []string{"outside/pwned", "outside/victim", "outside/hl"} {
					if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
						t.Errorf("%s not inside the layer: %v", p, err)
					}
				}
			},
		},
		{
			name: "implicit parent swapped for a dangling symlink fails",
			entries: []tarEntry{
				{name: "a/b/c", typ: tar.TypeReg, data: "first"},
				{name: "a", typ: tar.TypeSymlink, link: "../outside"},
				{name: "a/b/.wh.victim", typ: tar.TypeReg},
			},
			wantErr: `parent "a/b"`,
		},
		{
			name: "implicit parent swapped for an absolute symlink stays inside",
			entries: []tarEntry{
				{name: "x/y/f", typ: tar.TypeReg, data: "first"},
				{name: "x/y", typ: tar.TypeSymlink, link: "/"},
				{name: "x/y/pwned", typ: tar.TypeReg, data: "x"},
				{name: "x/y/.wh.victim", typ: tar.TypeReg},
				{name: "x/y/hl", typ: tar.TypeLink, link: "x/y/pwned"},
			},
			check: func(t *testing.T, root, outside string) {
				assertEmpty(t, outside)
				for _, p := range []string{"pwned", "victim", "hl"} {
					if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
						t.Errorf("%s not inside the layer: %v", p, err)
					}
				}
			},
		},
		{
			name: "privileged xattrs dropped, user and capability kept",
			entries: []tarEntry{
				{name: "f", typ: tar.TypeReg, data: "x", xattrs: map[string]string{
					"user.keep":                "1",
					"trusted.overlay.opaque":   "y",
					"trusted.overlay.redirect": "/etc",
					"security.selinux":         "system_u:object_r:shadow_t:s0",
				}},
				{name: "d/", typ: tar.TypeDir, mode: 0o755, xattrs: map[string]string{"trusted.overlay.opaque": "y"}},
			},
			check: func(t *testing.T, root, _ string) {
				buf := make([]byte, 64)
				if n, err := unix.Lgetxattr(filepath.Join(root, "f"), "user.keep", buf); err != nil || string(buf[:n]) != "1" {
					t.Errorf("user.keep: %q %v", buf[:n], err)
				}
				for p, names := range map[string][]string{
					"f": {"trusted.overlay.opaque", "trusted.overlay.redirect"},
					"d": {"trusted.overlay.opaque"},
				} {
					for _, n := range names {
						if _, err := unix.Lgetxattr(filepath.Join(root, p), n, buf); err == nil {
							t.Errorf("%s: %s copied from the layer", p, n)
						}
					}
				}
			},
		},
		{
			name: "hard link to outside fails",
			entries: []tarEntry{
				{name: "pw", typ: tar.TypeLink, link: "../outside/secret"},
			},
			wantErr: "hard link target",
		},
		{
			name: "later entry replaces earlier, dir replaced by file",
			entries: []tarEntry{
				{name: "a/", typ: tar.TypeDir, mode: 0o755},
				{name: "a/b", typ: tar.TypeReg, data: "old"},
				{name: "a", typ: tar.TypeSymlink, link: "/etc"},
				{name: "f", typ: tar.TypeReg, data: "old"},
				{name: "f", typ: tar.TypeReg, data: "new"},
			},
			check: func(t *testing.T, root, _ string) {
				if l, err := os.Readlink(filepath.Join(root, "a")); err != nil || l != "/etc" {
					t.Errorf("a: %q %v", l, err)
				}
				if b, err := os.ReadFile(filepath.Join(root, "f")); err != nil || string(b) != "new" {
					t.Errorf("f: %q %v", b, err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			root := filepath.Join(base, "layer", "root")
			outside := filepath.Join(base, "layer", "outside")
			for _, d := range []string{root, outside} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			_, err := unpackLayer(context.Background(), bytes.NewReader(buildTar(t, tc.entries)), root)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				assertEmpty(t, outside)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, root, outside)
		})
	}
}

func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return st
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("%s: %d entries written outside the layer", dir, len(ents))
	}
}

func TestCleanRel(t *testing.T) {
	for in, want := range map[string]string{
		"./":        ".",
		"/":         ".",
		"a/b/":      "a/b",
		"../../x":   "x",
		"a/../../b": "b",
		"./a//b":    "a/b",
	} {
		if got := cleanRel(in); got != want {
			t.Errorf("cleanRel(%q) = %q, want %q", in, got, want)
		}
	}
}
