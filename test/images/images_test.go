package images

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func needBusybox(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skipf("needs the host's static busybox at %s (apt-get install busybox-static): %v", BusyboxPath, err)
	}
}

// Two independent builds must give the same digests, or tests could not pin ids.
func TestBusyboxDeterministic(t *testing.T) {
	needBusybox(t)
	a, err := buildBusybox()
	if err != nil {
		t.Fatal(err)
	}
	b, err := buildBusybox()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		what string
		get  func(v1.Image) (v1.Hash, error)
	}{
		{"manifest digest", v1.Image.Digest},
		{"config name", v1.Image.ConfigName},
	} {
		da, err := f.get(a)
		if err != nil {
			t.Fatal(err)
		}
		db, err := f.get(b)
		if err != nil {
			t.Fatal(err)
		}
		if da != db {
			t.Errorf("%s differs between builds: %s vs %s", f.what, da, db)
		}
	}
}

func TestBusyboxContent(t *testing.T) {
	needBusybox(t)
	img, err := Busybox()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cf.Config.Cmd, " "); got != "sh" {
		t.Errorf("Cmd = %q, want sh", got)
	}
	if len(cf.Config.Env) != 1 || !strings.HasPrefix(cf.Config.Env[0], "PATH=") {
		t.Errorf("Env = %q, want one PATH", cf.Config.Env)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform = %s/%s", cf.OS, cf.Architecture)
	}
	if !cf.Created.Time.Equal(Epoch) {
		t.Errorf("Created = %v, want %v", cf.Created, Epoch)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	entries := map[string]*tar.Header{}
	contents := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		entries[h.Name] = h
		if !h.ModTime.Equal(Epoch) {
			t.Errorf("%s: mtime %v, want %v", h.Name, h.ModTime, Epoch)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: owner %d:%d, want 0:0", h.Name, h.Uid, h.Gid)
		}
		if h.Typeflag == tar.TypeReg && h.Size < 4096 {
			b, _ := io.ReadAll(tr)
			contents[h.Name] = string(b)
		}
	}
	tests := []struct {
		name     string
		typ      byte
		link     string
		contains string
	}{
		{"bin/busybox", tar.TypeReg, "", ""},
		{"bin/sh", tar.TypeSymlink, "/bin/busybox", ""},
		{"usr/bin/nc", tar.TypeSymlink, "/bin/busybox", ""},
		{"usr/sbin/httpd", tar.TypeSymlink, "/bin/busybox", ""},
		{"bin/sleep", tar.TypeSymlink, "/bin/busybox", ""},
		{"etc/passwd", tar.TypeReg, "", "nobody:x:65534:65534:"},
		{"etc/group", tar.TypeReg, "", "root:x:0:"},
		{"var/www/index.html", tar.TypeReg, "", IndexHTML},
		{"tmp/", tar.TypeDir, "", ""},
	}
	for _, tc := range tests {
		h, ok := entries[tc.name]
		if !ok {
			t.Errorf("%s missing from the layer", tc.name)
			continue
		}
		if h.Typeflag != tc.typ {
			t.Errorf("%s: type %c, want %c", tc.name, h.Typeflag, tc.typ)
		}
		if h.Linkname != tc.link {
			t.Errorf("%s: link %q, want %q", tc.name, h.Linkname, tc.link)
		}
		if tc.contains != "" && !strings.Contains(contents[tc.name], tc.contains) {
			t.Errorf("%s = %q, want it to contain %q", tc.name, contents[tc.name], tc.contains)
		}
	}
	if h := entries["tmp/"]; h != nil && h.Mode&0o1777 != 0o1777 {
		t.Errorf("tmp mode %o, want 1777", h.Mode)
	}
}

func TestLayerSortedWithParents(t *testing.T) {
	l, err := Layer([]File{
		{Name: "/z/file", Mode: 0o644, Data: []byte("z")},
		{Name: "a/b/c", Link: "../x"},
	})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var names []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	want := "a/ a/b/ a/b/c z/ z/file"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("entries = %q, want %q", got, want)
	}
}

// A pushed image must come back with the same digest, over plain HTTP on 127.0.0.1.
func TestRegistryPushPull(t *testing.T) {
	needBusybox(t)
	r, ref, err := ServeBusybox()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if !strings.HasPrefix(ref, "127.0.0.1:") || !strings.HasSuffix(ref, "/busybox:1.36") {
		t.Errorf("ref = %q, want 127.0.0.1:PORT/busybox:1.36", ref)
	}
	img, _ := Busybox()
	want, _ := img.Digest()
	parsed, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Head(parsed)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != want {
		t.Errorf("registry digest %s, want %s", got.Digest, want)
	}
	missing, err := name.ParseReference(r.Addr+"/nothere:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Head(missing); err == nil {
		t.Error("HEAD of a missing image succeeded")
	}
}

func TestStartRegistryRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "10.0.0.1:0"} {
		if r, err := StartRegistry(addr); err == nil {
			r.Close()
			t.Errorf("StartRegistry(%q) succeeded, want refusal", addr)
		}
	}
}

func TestWriteArchive(t *testing.T) {
	needBusybox(t)
	img, err := Busybox()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "busybox.tar")
	if err := WriteArchive(file, ArchiveTag, img); err != nil {
		t.Fatal(err)
	}
	tag := name.MustParseReference(ArchiveTag).(name.Tag)
	back, err := tarball.ImageFromPath(file, &tag)
	if err != nil {
		t.Fatal(err)
	}
	gotCfg, _ := back.ConfigName()
	wantCfg, _ := img.ConfigName()
	if gotCfg != wantCfg {
		t.Errorf("archive config %s, want %s", gotCfg, wantCfg)
	}
	// docker load and runtimes look for manifest.json with RepoTags.
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(file) })
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || len(m[0].RepoTags) != 1 || m[0].RepoTags[0] != ArchiveTag {
		t.Errorf("manifest.json = %+v, want one image tagged %s", m, ArchiveTag)
	}
}

func TestPauseAndMultiArchive(t *testing.T) {
	needBusybox(t)
	bin := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(bin, []byte("\x7fELF fake"), 0o755); err != nil {
		t.Fatal(err)
	}
	pause, err := Pause(bin)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := pause.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cf.Config.Entrypoint, " ") != "/pause" {
		t.Errorf("pause entrypoint %q, want /pause", cf.Config.Entrypoint)
	}
	bb, _ := Busybox()
	file := filepath.Join(t.TempDir(), "both.tar")
	if err := WriteArchives(file, map[string]v1.Image{ArchiveTag: bb, PauseTag: pause}); err != nil {
		t.Fatal(err)
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(file) })
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for _, d := range m {
		tags = append(tags, d.RepoTags...)
	}
	if got, want := strings.Join(tags, " "), ArchiveTag+" "+PauseTag; got != want {
		t.Errorf("archive tags %q, want %q", got, want)
	}
}
