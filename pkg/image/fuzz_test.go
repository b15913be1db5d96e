package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/pod-shim/pod-shim/pkg/store"
)

// layerProgram turns fuzz input into a layer tar from a grammar of the
// entries an attacker combines: directories, files, symlinks (relative,
// absolute inside the image, "..", and absolute host paths to the canary
// next to the layer), hard links, FIFOs, whiteouts and opaque markers, at
// paths that reuse a few names so entries replace each other's parents.
// base is the host directory holding the layer root ("root") and the
// canary tree ("canary").
func layerProgram(data []byte, base string) []byte {
	comps := []string{"a", "b", "c", "canary", "..", "etc", "."}
	i := 0
	next := func() int {
		if i >= len(data) {
			return 0
		}
		i++
		return int(data[i-1])
	}
	pathOf := func() (string, int) {
		b := next()
		depth := 1 + b%3
		parts := make([]string, 0, depth)
		for k := range depth {
			parts = append(parts, comps[(b>>(2+k))%len(comps)])
		}
		return strings.Join(parts, "/"), depth
	}
	target := func(depth int) string {
		b := next()
		ups := strings.Repeat("../", 1+b%(depth+1))
		switch (b >> 4) % 8 {
		case 0:
			return ups + "canary"
		case 1:
			return ups + "canary/d"
		case 2:
			return filepath.Join(base, "canary") // a host path
		case 3:
			return filepath.Join(base, "canary", "f")
		case 4:
			return "/canary" // inside the image
		case 5:
			return ups
		case 6:
			return "a/b"
		default:
			return "."
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for n := 0; i < len(data) && n < 64; n++ {
		op := next()
		name, depth := pathOf()
		h := &tar.Header{Name: name, Mode: 0o755, ModTime: testMtime, Format: tar.FormatPAX}
		var body []byte
		switch op % 9 {
		case 0:
			h.Typeflag, h.Name = tar.TypeDir, name+"/"
		case 1, 2:
			h.Typeflag, body = tar.TypeReg, []byte("pwned")
		case 3, 4:
			h.Typeflag, h.Linkname = tar.TypeSymlink, target(depth)
		case 5:
			h.Typeflag, h.Linkname = tar.TypeLink, strings.TrimPrefix(target(depth), "/")
		case 6:
			h.Typeflag, h.Name = tar.TypeReg, path.Join(path.Dir(name), whiteoutPrefix+path.Base(name))
		case 7:
			h.Typeflag, h.Name = tar.TypeReg, path.Join(name, whiteoutOpaque)
		default:
			h.Typeflag = tar.TypeFifo
		}
		if op&0x80 != 0 {
			h.PAXRecords = map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.fuzz": "1"}
		}
		h.Size = int64(len(body))
		if tw.WriteHeader(h) != nil {
			continue
		}
		tw.Write(body)
	}
	tw.Close()
	return buf.Bytes()
}

// treeState records everything about a tree an escaping write could
// change: names, types, modes, owners, sizes, link counts, contents, link
// texts and xattrs.
func treeState(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("mode=%o uid=%d gid=%d size=%d nlink=%d mtime=%d", st.Mode, st.Uid, st.Gid, st.Size, st.Nlink, st.Mtim.Nano())
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" sha=%x", sha256.Sum256(b))
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			desc += " -> " + l
		}
		sz, _ := unix.Llistxattr(p, nil)
		if sz > 0 {
			names := make([]byte, sz)
			sz, _ = unix.Llistxattr(p, names)
			list := strings.Split(strings.TrimRight(string(names[:sz]), "\x00"), "\x00")
			sort.Strings(list)
			desc += " xattrs=" + strings.Join(list, ",")
		}
		out[strings.TrimPrefix(p, dir)] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// makeCanary builds the tree next to the layer root that no layer may touch.
func makeCanary(t testing.TB, base string) {
	t.Helper()
	c := filepath.Join(base, "canary")
	for _, d := range []string{c, filepath.Join(c, "d"), filepath.Join(c, "etc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"f", "d/f", "etc/passwd", "a", "b"} {
		if err := os.WriteFile(filepath.Join(c, f), []byte("canary "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("d", filepath.Join(c, "c")); err != nil {
		t.Fatal(err)
	}
}

var unpackSeeds = [][]byte{
	// dir a, file a/b/c, symlink a -> .., file a/canary/f (the parent swap)
	{0, 0x00, 1, 0x29, 3, 0x00, 0x50, 1, 0x0d},
	// symlink a -> ../canary, whiteout a/f, opaque a, hard link to canary/f
	{3, 0x00, 0x00, 6, 0x01, 7, 0x00, 5, 0x00, 0x30},
	// absolute host symlink then writes below it
	{3, 0x00, 0x20, 1, 0x01, 1, 0x05, 6, 0x05},
	// dir swaps: dir, symlink over it, dir again, file
	{0, 0x01, 4, 0x01, 0x10, 0, 0x01, 2, 0x05, 0x88, 0x05},
}

// FuzzUnpack unpacks random layers into a root that sits next to a canary
// tree and fails if anything outside the root changed, or if the root
// itself stopped being the directory it was.
func FuzzUnpack(f *testing.F) {
	requireRoot(f)
	for _, s := range unpackSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		root := filepath.Join(base, "root")
		if err := os.Mkdir(root, 0o700); err != nil {
			t.Fatal(err)
		}
		makeCanary(t, base)
		before := treeState(t, filepath.Join(base, "canary"))
		var rootSt unix.Stat_t
		if err := unix.Lstat(root, &rootSt); err != nil {
			t.Fatal(err)
		}
		_, _ = unpackLayer(context.Background(), bytes.NewReader(layerProgram(data, base)), root)
		after := treeState(t, filepath.Join(base, "canary"))
		for k, v := range before {
			if after[k] != v {
				t.Errorf("canary %q changed: %q -> %q", k, v, after[k])
			}
		}
		for k, v := range after {
			if _, ok := before[k]; !ok {
				t.Errorf("canary gained %q: %s", k, v)
			}
		}
		ents, err := os.ReadDir(base)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 2 {
			t.Errorf("the layer's parent holds %d entries, want root and canary", len(ents))
		}
		var st unix.Stat_t
		if err := unix.Lstat(root, &st); err != nil || st.Ino != rootSt.Ino || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			t.Errorf("layer root replaced: %v", err)
		}
	})
}

// FuzzParseRef: any string either fails with ErrInvalidReference or gives
// a ref whose normalized name parses back to itself, whose keys carry no
// whitespace, and which pulls by digest whenever a digest is given.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{
		"busybox", "docker.io/library/busybox:latest", "127.0.0.1:5000/a/b:1",
		"repo:tag@sha256:" + strings.Repeat("a", 64), "localhost/x@sha256:" + strings.Repeat("0", 64),
		"UPPER/case", "a//b", "a:b:c", " x", "x@sha256:short", "[::1]:5000/x:y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		p, err := parseRef(ref)
		if err != nil {
			if !strings.Contains(err.Error(), ErrInvalidReference.Error()) {
				t.Fatalf("parseRef(%q) error does not wrap ErrInvalidReference: %v", ref, err)
			}
			return
		}
		key := p.lookupKey()
		if key == "" || strings.ContainsAny(key, " \t\n\x00") {
			t.Fatalf("parseRef(%q): lookup key %q", ref, key)
		}
		again, err := parseRef(p.named.String())
		if err != nil || again.named.String() != p.named.String() {
			t.Fatalf("parseRef(%q) = %q, which parses to %v, %v", ref, p.named, again, err)
		}
		if p.digest != "" && !strings.HasSuffix(p.remoteRef("h"), "@"+p.digest) {
			t.Fatalf("parseRef(%q): remote ref %q does not pin digest %s", ref, p.remoteRef("h"), p.digest)
		}
	})
}

// importSeeds are a docker-save archive and an OCI layout archive of small
// images, one of them with the parent-swap layer.
func importSeeds(t testing.TB) [][]byte {
	t.Helper()
	plain := imageOf(t, v1.Config{Cmd: []string{"x"}}, layerOf(t, []tarEntry{{name: "f", typ: tar.TypeReg, data: "x"}}))
	swap := imageOf(t, v1.Config{}, layerOf(t, []tarEntry{
		{name: "a/canary/c", typ: tar.TypeReg, data: "first"},
		{name: "a", typ: tar.TypeSymlink, link: "../.."},
		{name: "a/canary/pwned", typ: tar.TypeReg, data: "x"},
		{name: "a/canary/.wh.f", typ: tar.TypeReg},
	}))
	var seeds [][]byte
	tag, _ := name.NewTag("example.com/fuzz:1")
	var docker bytes.Buffer
	if err := tarball.MultiWrite(map[name.Tag]v1.Image{tag: plain}, &docker); err != nil {
		t.Fatal(err)
	}
	seeds = append(seeds, docker.Bytes())
	var dockerSwap bytes.Buffer
	if err := tarball.MultiWrite(map[name.Tag]v1.Image{tag: swap}, &dockerSwap); err != nil {
		t.Fatal(err)
	}
	seeds = append(seeds, dockerSwap.Bytes())
	dir := filepath.Join(t.TempDir(), "layout")
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: plain, Descriptor: v1.Descriptor{Annotations: map[string]string{annotationRefName: "example.com/fuzz:oci"}}})
	if _, err := layout.Write(dir, idx); err != nil {
		t.Fatal(err)
	}
	var oci bytes.Buffer
	tarDir(t, dir, &oci)
	return append(seeds, oci.Bytes())
}

// FuzzImport feeds random archives to Import on a store whose root sits
// next to a canary tree: whatever the archive holds, Import must not
// panic, must leave its work dir empty, and nothing outside the store may
// change.
func FuzzImport(f *testing.F) {
	requireRoot(f)
	for _, s := range importSeeds(f) {
		f.Add(s)
	}
	dir := f.TempDir()
	db, err := store.Open(filepath.Join(dir, "meta.db"), time.Second)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	s, err := New(Options{Root: filepath.Join(dir, "image"), DB: db})
	if err != nil {
		f.Fatal(err)
	}
	makeCanary(f, dir)
	before := treeState(f, filepath.Join(dir, "canary"))
	f.Fuzz(func(t *testing.T, archive []byte) {
		imgs, _ := s.Import(context.Background(), bytes.NewReader(archive))
		for _, img := range imgs {
			if err := s.Remove(img.ID); err != nil {
				t.Fatalf("remove imported %s: %v", img.ID, err)
			}
		}
		after := treeState(t, filepath.Join(dir, "canary"))
		if fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("canary changed:\nbefore %v\nafter  %v", before, after)
		}
		if ents, _ := os.ReadDir(s.path("tmp")); len(ents) != 0 {
			t.Fatalf("import left %d entries in tmp", len(ents))
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 3 {
			t.Fatalf("the store's parent holds %d entries, want meta.db, image, canary", len(ents))
		}
	})
}
