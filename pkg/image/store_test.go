package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/pod-shim/pod-shim/pkg/store"
)

// newStore makes a Store under a fresh root with its own DB.
func newStore(t testing.TB, regs map[string]RegistryHost) *Store {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "meta.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := New(Options{Root: filepath.Join(dir, "image"), DB: db, Registries: regs})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testRegistry serves an in-memory registry on 127.0.0.1, wrapped by wrap.
// It counts blob GETs by digest so tests can check what was fetched.
type testRegistry struct {
	host  string
	mu    sync.Mutex
	blobs map[string]int
}

func startRegistry(t testing.TB, wrap func(http.Handler) http.Handler) *testRegistry {
	t.Helper()
	r := &testRegistry{blobs: map[string]int{}}
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	inner := h
	h = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/sha256:") {
			r.mu.Lock()
			r.blobs[req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]]++
			r.mu.Unlock()
		}
		inner.ServeHTTP(w, req)
	})
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

func (r *testRegistry) blobGets(d v1.Hash) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobs[d.String()]
}

func push(t testing.TB, ref string, img v1.Image, opts ...remote.Option) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

func layerOf(t testing.TB, entries []tarEntry) v1.Layer {
	t.Helper()
	data := buildTar(t, entries)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func imageOf(t testing.TB, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", runtime.GOARCH, cfg
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// twoLayerImage has a lower layer and an upper one that whites out a file
// and makes a directory opaque.
func twoLayerImage(t testing.TB, marker string) v1.Image {
	lower := layerOf(t, []tarEntry{
		{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "bin/busybox", typ: tar.TypeReg, mode: 0o755, data: "busybox"},
		{name: "bin/sh", typ: tar.TypeSymlink, link: "busybox"},
		{name: "bin/ln", typ: tar.TypeLink, link: "bin/busybox"},
		{name: "bin/su", typ: tar.TypeReg, mode: 0o4755, data: "su"},
		{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "etc/gone", typ: tar.TypeReg, data: "gone"},
		{name: "etc/hostname", typ: tar.TypeReg, data: "lower\n"},
		{name: "opq/", typ: tar.TypeDir, mode: 0o755},
		{name: "opq/lower", typ: tar.TypeReg, data: "l"},
	})
	upper := layerOf(t, []tarEntry{
		{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "etc/.wh.gone", typ: tar.TypeReg},
		{name: "etc/hostname", typ: tar.TypeReg, data: marker + "\n"},
		{name: "opq/", typ: tar.TypeDir, mode: 0o755},
		{name: "opq/.wh..wh..opq", typ: tar.TypeReg},
		{name: "opq/upper", typ: tar.TypeReg, data: "u"},
	})
	return imageOf(t, v1.Config{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/bin"}, User: "1000:1000", WorkingDir: "/etc"}, lower, upper)
}

func digestOfImage(t testing.TB, img v1.Image) v1.Hash {
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func configName(t testing.TB, img v1.Image) string {
	d, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func layerDigests(t testing.TB, img v1.Image) (digests, diffIDs []v1.Hash) {
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		d, _ := l.Digest()
		di, _ := l.DiffID()
		digests, diffIDs = append(digests, d), append(diffIDs, di)
	}
	return digests, diffIDs
}

// mountTarget returns a rootfs mount point that is unmounted at cleanup
// even when the test fails before RemoveRootfs.
func mountTarget(t testing.TB) string {
	target := filepath.Join(t.TempDir(), "rootfs")
	t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH) })
	return target
}

func TestPullPrepareRemove(t *testing.T) {
	reg := startRegistry(t, nil)
	s := newStore(t, nil)
	img := twoLayerImage(t, "top")
	ref := reg.host + "/app/web:1.0"
	push(t, ref, img)

	got, err := s.Pull(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	manifestDigest := digestOfImage(t, img)
	_, diffIDs := layerDigests(t, img)
	if got.ID != configName(t, img) {
		t.Errorf("ID = %s, want %s", got.ID, configName(t, img))
	}
	if want := []string{reg.host + "/app/web:1.0"}; fmt.Sprint(got.RepoTags) != fmt.Sprint(want) {
		t.Errorf("RepoTags = %v, want %v", got.RepoTags, want)
	}
	if want := []string{reg.host + "/app/web@" + manifestDigest.String()}; fmt.Sprint(got.RepoDigests) != fmt.Sprint(want) {
		t.Errorf("RepoDigests = %v, want %v", got.RepoDigests, want)
	}
	if got.Config.User != "1000:1000" || got.Config.WorkingDir != "/etc" || fmt.Sprint(got.Config.Cmd) != "[/bin/sh]" {
		t.Errorf("Config = %+v", got.Config)
	}
	if len(got.Layers) != 2 || got.Layers[0] != diffIDs[0].String() || got.Layers[1] != diffIDs[1].String() {
		t.Errorf("Layers = %v, want %v", got.Layers, diffIDs)
	}
	m, _ := img.Manifest()
	rawM, _ := img.RawManifest()
	wantSize := uint64(len(rawM)) + uint64(m.Config.Size) + uint64(m.Layers[0].Size+m.Layers[1].Size)
	if got.Size != wantSize {
		t.Errorf("Size = %d, want %d", got.Size, wantSize)
	}
	fs, err := s.FsInfo()
	if err != nil || fs.UsedBytes == 0 || fs.InodesUsed == 0 || fs.Mountpoint != s.root {
		t.Errorf("FsInfo = %+v, %v", fs, err)
	}

	target := mountTarget(t)
	root, err := s.PrepareRootfs(context.Background(), got.ID, "c1", target, false)
	if err != nil {
		t.Fatal(err)
	}
	if root != target {
		t.Errorf("rootfs %s, want %s", root, target)
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			return "ERR " + err.Error()
		}
		return string(b)
	}
	for p, want := range map[string]string{"etc/hostname": "top\n", "opq/upper": "u", "bin/sh": "busybox", "bin/ln": "busybox"} {
		if got := read(p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	for _, p := range []string{"etc/gone", "opq/lower"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s visible in rootfs: %v", p, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "bin/su")); err != nil || fi.Mode()&os.ModeSetuid == 0 || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/su mode %v, %v", fi.Mode(), err)
	}
	// The rootfs is writable, and writes land in the container's upper dir.
	if err := os.WriteFile(filepath.Join(root, "etc/new"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.containerDir("c1"), "upper/etc/new")); err != nil {
		t.Errorf("write did not reach upper dir: %v", err)
	}

	// Removing the image while c1 uses it keeps its layers.
	if err := s.Remove(got.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(got.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Remove: %v", err)
	}
	for _, d := range diffIDs {
		if _, err := os.Stat(s.layerDir(d.Hex)); err != nil {
			t.Errorf("layer in use was deleted: %v", err)
		}
	}
	if err := s.Remove(got.ID); err != nil {
		t.Errorf("second Remove: %v", err)
	}

	if err := s.RemoveRootfs("c1", target); err != nil {
		t.Fatal(err)
	}
	if mounted(t, target) {
		t.Error("rootfs still mounted")
	}
	if err := s.RemoveRootfs("c1", target); err != nil {
		t.Errorf("second RemoveRootfs: %v", err)
	}
	// Now nothing uses the layers or blobs: all gone, counters back to zero.
	for _, d := range diffIDs {
		if _, err := os.Stat(s.layerDir(d.Hex)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("unused layer %s kept: %v", d.Hex, err)
		}
	}
	assertDirEmpty(t, s.path("blobs/sha256"))
	assertDirEmpty(t, s.path("containers"))
	if fs, _ := s.FsInfo(); fs.UsedBytes != 0 || fs.InodesUsed != 0 {
		t.Errorf("FsInfo after removing everything = %+v", fs)
	}
}

func assertDirEmpty(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("%s not empty: %v", dir, names)
	}
}

func mounted(t testing.TB, target string) bool {
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == target {
			return true
		}
	}
	return false
}

func TestPrepareRootfsReadOnly(t *testing.T) {
	reg := startRegistry(t, nil)
	s := newStore(t, nil)
	single := imageOf(t, v1.Config{Entrypoint: []string{"/pause"}}, layerOf(t, []tarEntry{{name: "pause", typ: tar.TypeReg, mode: 0o755, data: "p"}}))
	push(t, reg.host+"/pause:3.10", single)
	push(t, reg.host+"/app:1", twoLayerImage(t, "ro"))
	pause, err := s.Pull(context.Background(), reg.host+"/pause:3.10", nil)
	if err != nil {
		t.Fatal(err)
	}
	app, err := s.Pull(context.Background(), reg.host+"/app:1", nil)
	if err != nil {
		t.Fatal(err)
	}

	// One layer: the layer dir itself, nothing mounted.
	target := mountTarget(t)
	root, err := s.PrepareRootfs(context.Background(), pause.ID, "p1", target, true)
	if err != nil {
		t.Fatal(err)
	}
	if root != s.layerDir(strings.TrimPrefix(pause.Layers[0], "sha256:")) || mounted(t, target) {
		t.Errorf("read-only single layer: root %s, mounted %v", root, mounted(t, target))
	}
	if _, err := os.Stat(filepath.Join(root, "pause")); err != nil {
		t.Error(err)
	}

	// Two layers: a read-only overlay.
	target2 := mountTarget(t)
	root2, err := s.PrepareRootfs(context.Background(), app.ID, "p2", target2, true)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root2, "etc/hostname")); err != nil || string(b) != "ro\n" {
		t.Errorf("etc/hostname = %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(root2, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write to read-only rootfs: %v", err)
	}

	// A removed image's layers survive while a rootfs uses them, and New
	// (a daemon restart) still knows about that use.
	if err := s.Remove(pause.ID); err != nil {
		t.Fatal(err)
	}
	s2, err := New(Options{Root: s.root, DB: s.db})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "pause")); err != nil {
		t.Errorf("layer of a running pause container deleted: %v", err)
	}
	for id, tg := range map[string]string{"p1": target, "p2": target2} {
		if err := s2.RemoveRootfs(id, tg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("layer of removed image kept after its last rootfs went: %v", err)
	}
	if mounted(t, target2) {
		t.Error("read-only overlay still mounted")
	}
	if _, err := s2.Get(app.ID); err != nil {
		t.Errorf("image still present: %v", err)
	}
}

func TestGetForms(t *testing.T) {
	reg := startRegistry(t, nil)
	s := newStore(t, map[string]RegistryHost{"docker.io": {Mirrors: []string{"http://" + reg.host}}})
	img := twoLayerImage(t, "get")
	push(t, reg.host+"/library/busybox:latest", img)
	got, err := s.Pull(context.Background(), "busybox", nil)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.RepoTags) != "[docker.io/library/busybox:latest]" {
		t.Fatalf("RepoTags = %v", got.RepoTags)
	}
	hexID := strings.TrimPrefix(got.ID, "sha256:")
	md := digestOfImage(t, img).String()
	tests := []struct {
		in      string
		wantErr error
	}{
		{in: "busybox"},
		{in: "busybox:latest"},
		{in: "library/busybox"},
		{in: "docker.io/library/busybox:latest"},
		{in: "docker.io/library/busybox@" + md},
		{in: "busybox@" + md},
		{in: got.ID},
		{in: hexID},
		{in: hexID[:12]},
		{in: "sha256:" + hexID[:5]},
		{in: "busybox:other", wantErr: ErrNotFound},
		{in: "sha256:" + strings.Repeat("0", 64), wantErr: ErrNotFound},
		{in: "Busy Box", wantErr: ErrInvalidReference},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			img, err := s.Get(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || img.ID != got.ID {
				t.Fatalf("Get = %v, %v", img, err)
			}
		})
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].ID != got.ID {
		t.Errorf("List = %v, %v", list, err)
	}
	if err := s.SetPinned("busybox", true); err != nil {
		t.Fatal(err)
	}
	// Pinning survives a re-pull of the same image.
	if again, err := s.Pull(context.Background(), "busybox", nil); err != nil || !again.Pinned {
		t.Errorf("re-pulled image pinned=%v, %v", again != nil && again.Pinned, err)
	}
	if err := s.SetPinned("busybox:nope", true); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetPinned of a missing image: %v", err)
	}
	if _, err := s.Pull(context.Background(), "UPPER/case", nil); !errors.Is(err, ErrInvalidReference) {
		t.Errorf("Pull of malformed ref: %v", err)
	}
}

func TestPullMovesTag(t *testing.T) {
	reg := startRegistry(t, nil)
	s := newStore(t, nil)
	ref := reg.host + "/app:latest"
	push(t, ref, twoLayerImage(t, "v1"))
	first, err := s.Pull(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	push(t, ref, twoLayerImage(t, "v2"))
	second, err := s.Pull(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if first.ID == second.ID {
		t.Fatal("test images should differ")
	}
	if img, err := s.Get(ref); err != nil || img.ID != second.ID {
		t.Errorf("tag points at %v, %v; want %s", img, err, second.ID)
	}
	old, err := s.Get(first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(old.RepoTags) != 0 || len(old.RepoDigests) != 1 {
		t.Errorf("old image tags %v digests %v", old.RepoTags, old.RepoDigests)
	}
	// Removing the old image keeps the shared lower layer of the new one.
	if err := s.Remove(first.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.layerDir(strings.TrimPrefix(second.Layers[0], "sha256:"))); err != nil {
		t.Errorf("shared layer removed: %v", err)
	}
	if _, err := os.Stat(s.layerDir(strings.TrimPrefix(first.Layers[1], "sha256:"))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old image's own layer kept: %v", err)
	}
}

func TestPullMirror(t *testing.T) {
	reg := startRegistry(t, nil)
	img := imageOf(t, v1.Config{Entrypoint: []string{"/pause"}}, layerOf(t, []tarEntry{{name: "pause", typ: tar.TypeReg, mode: 0o755, data: "p"}}))
	push(t, reg.host+"/pause:3.10", img)
	tests := []struct {
		name   string
		mirror []string
	}{
		{"http scheme", []string{"http://" + reg.host}},
		{"loopback without scheme", []string{reg.host}},
		{"dead mirror first", []string{"http://127.0.0.1:1", reg.host}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, map[string]RegistryHost{"registry.k8s.io": {Mirrors: tc.mirror}})
			got, err := s.Pull(context.Background(), "registry.k8s.io/pause:3.10", nil)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got.RepoTags) != "[registry.k8s.io/pause:3.10]" || got.ID != configName(t, img) {
				t.Errorf("got %+v", got)
			}
		})
	}
}

func TestPullIndexPicksHostPlatform(t *testing.T) {
	reg := startRegistry(t, nil)
	s := newStore(t, nil)
	mine := twoLayerImage(t, "mine")
	other := imageOf(t, v1.Config{}, layerOf(t, []tarEntry{{name: "other", typ: tar.TypeReg, data: "o"}}))
	otherArch := "arm64"
	if runtime.GOARCH == "arm64" {
		otherArch = "amd64"
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: otherArch}}},
		mutate.IndexAddendum{Add: mine, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	r, _ := name.ParseReference(reg.host + "/multi:1")
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	got, err := s.Pull(context.Background(), reg.host+"/multi:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()
	if got.ID != configName(t, mine) {
		t.Errorf("ID %s, want host platform's %s", got.ID, configName(t, mine))
	}
	if want := reg.host + "/multi@" + idxDigest.String(); fmt.Sprint(got.RepoDigests) != "["+want+"]" {
		t.Errorf("RepoDigests %v, want the index digest %s", got.RepoDigests, want)
	}
	otherDigests, _ := layerDigests(t, other)
	if n := reg.blobGets(otherDigests[0]); n != 0 {
		t.Errorf("fetched the other platform's layer %d times", n)
	}
}

func TestPullAuth(t *testing.T) {
	reg := startRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "s3cret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	img := twoLayerImage(t, "auth")
	push(t, reg.host+"/private:1", img, remote.WithAuth(&basicAuth{"alice", "s3cret"}))
	s := newStore(t, nil)
	ref := reg.host + "/private:1"
	if _, err := s.Pull(context.Background(), ref, nil); err == nil {
		t.Fatal("anonymous pull of a private image succeeded")
	}
	if _, err := s.Pull(context.Background(), ref, &Auth{Username: "alice", Password: "wrong"}); err == nil {
		t.Fatal("pull with a wrong password succeeded")
	}
	for _, a := range []*Auth{
		{Username: "alice", Password: "s3cret"},
		{Auth: "YWxpY2U6czNjcmV0"}, // base64("alice:s3cret")
	} {
		got, err := s.Pull(context.Background(), ref, a)
		if err != nil {
			t.Fatalf("pull with %+v: %v", a, err)
		}
		if got.ID != configName(t, img) {
			t.Errorf("ID %s", got.ID)
		}
	}
}

type basicAuth struct{ user, pass string }

func (b *basicAuth) Authorization() (*authn.AuthConfig, error) {
	return &authn.AuthConfig{Username: b.user, Password: b.pass}, nil
}

func TestPullFailuresLeaveNothing(t *testing.T) {
	reg := startRegistry(t, nil)
	// Port 1 and 2 on loopback refuse connections: no traffic leaves the host.
	s := newStore(t, map[string]RegistryHost{"127.0.0.1:2": {Mirrors: []string{"http://127.0.0.1:1"}}})
	tests := []struct {
		name, ref string
		notFound  bool
	}{
		{"missing tag", reg.host + "/app:nope", true},
		{"missing repository", reg.host + "/nothing/here:1", true},
		{"unreachable registry", "127.0.0.1:1/app:1", false},
		{"unreachable mirror and upstream", "127.0.0.1:2/pause:3.10", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			_, err := s.Pull(ctx, tc.ref, nil)
			if err == nil {
				t.Fatal("pull succeeded")
			}
			if errors.Is(err, ErrInvalidReference) {
				t.Fatalf("reported as invalid reference: %v", err)
			}
			if errors.Is(err, ErrNotFound) != tc.notFound {
				t.Errorf("errors.Is(err, ErrNotFound) = %v, want %v: %v", !tc.notFound, tc.notFound, err)
			}
			t.Logf("failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
		})
	}
	list, err := s.List()
	if err != nil || len(list) != 0 {
		t.Errorf("List after failures = %v, %v", list, err)
	}
	assertDirEmpty(t, s.path("layers"))
	assertDirEmpty(t, s.path("blobs/sha256"))
	assertDirEmpty(t, s.path("tmp"))
}

func TestPullCorruptBlobRejected(t *testing.T) {
	img := twoLayerImage(t, "corrupt")
	digests, _ := layerDigests(t, img)
	reg := startRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, digests[1].String()) {
				rec := httptest.NewRecorder()
				next.ServeHTTP(rec, r)
				body := rec.Body.Bytes()
				if len(body) > 20 {
					body[len(body)-20] ^= 0xff
				}
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				_, _ = w.Write(body)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	push(t, reg.host+"/corrupt:1", img)
	s := newStore(t, nil)
	if _, err := s.Pull(context.Background(), reg.host+"/corrupt:1", nil); err == nil {
		t.Fatal("pull of a corrupted blob succeeded")
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Errorf("image recorded: %v", list)
	}
	if _, err := os.Stat(s.blobPath(digests[1].String())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("corrupted blob stored: %v", err)
	}
	if _, err := os.Stat(s.layerDir(digests[1].Hex)); err == nil {
		t.Error("layer of corrupted blob stored")
	}
}

func TestConcurrentPullsUnpackSharedLayerOnce(t *testing.T) {
	reg := startRegistry(t, nil)
	s := newStore(t, nil)
	shared := layerOf(t, []tarEntry{{name: "big", typ: tar.TypeReg, data: strings.Repeat("x", 1<<20)}})
	var refs []string
	for i := range 4 {
		img := imageOf(t, v1.Config{}, shared, layerOf(t, []tarEntry{{name: fmt.Sprintf("own%d", i), typ: tar.TypeReg, data: "o"}}))
		ref := fmt.Sprintf("%s/app%d:1", reg.host, i)
		push(t, ref, img)
		refs = append(refs, ref)
	}
	var wg sync.WaitGroup
	var failures atomic.Int32
	for _, ref := range refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Pull(context.Background(), ref, nil); err != nil {
				t.Error(err)
				failures.Add(1)
			}
		}()
	}
	wg.Wait()
	if failures.Load() > 0 {
		return
	}
	d, _ := shared.Digest()
	if n := reg.blobGets(d); n != 1 {
		t.Errorf("shared layer fetched %d times, want 1", n)
	}
	if list, _ := s.List(); len(list) != 4 {
		t.Errorf("%d images", len(list))
	}
}

func TestImportDockerArchive(t *testing.T) {
	s := newStore(t, nil)
	a := twoLayerImage(t, "a")
	b := imageOf(t, v1.Config{Cmd: []string{"b"}}, layerOf(t, []tarEntry{{name: "b", typ: tar.TypeReg, data: "b"}}))
	ta, _ := name.NewTag("busybox:1.36")
	tb, _ := name.NewTag("example.com/team/b:v2")
	file := filepath.Join(t.TempDir(), "save.tar")
	if err := tarball.MultiWriteToFile(file, map[name.Tag]v1.Image{ta: a, tb: b}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A pipe, as from stdin: Import must not need to seek.
	imgs, err := s.Import(context.Background(), io.MultiReader(f))
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 {
		t.Fatalf("imported %d images", len(imgs))
	}
	for ref, want := range map[string]string{
		"docker.io/library/busybox:1.36": configName(t, a),
		"example.com/team/b:v2":          configName(t, b),
	} {
		got, err := s.Get(ref)
		if err != nil || got.ID != want {
			t.Errorf("Get(%s) = %v, %v; want %s", ref, got, err, want)
		}
	}
	target := mountTarget(t)
	root, err := s.PrepareRootfs(context.Background(), "busybox:1.36", "imp", target, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.RemoveRootfs("imp", target) })
	if b, err := os.ReadFile(filepath.Join(root, "etc/hostname")); err != nil || string(b) != "a\n" {
		t.Errorf("etc/hostname = %q, %v", b, err)
	}
	assertDirEmpty(t, s.path("tmp"))
}

func TestImportOCILayout(t *testing.T) {
	s := newStore(t, nil)
	img := twoLayerImage(t, "oci")
	other := imageOf(t, v1.Config{}, layerOf(t, []tarEntry{{name: "o", typ: tar.TypeReg, data: "o"}}))
	multi := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}}},
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Annotations: map[string]string{annotationContainerdName: "example.com/oci/app:1"}}},
		mutate.IndexAddendum{Add: multi, Descriptor: v1.Descriptor{Annotations: map[string]string{annotationRefName: "example.com/oci/multi:2"}}},
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Annotations: map[string]string{annotationRefName: "latest"}}},
	)
	dir := filepath.Join(t.TempDir(), "layout")
	if _, err := layout.Write(dir, idx); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tarDir(t, dir, &buf)
	imgs, err := s.Import(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 3 {
		t.Fatalf("imported %d images", len(imgs))
	}
	for ref, want := range map[string]string{
		"example.com/oci/app:1":   configName(t, img),
		"example.com/oci/multi:2": configName(t, img),
	} {
		got, err := s.Get(ref)
		if err != nil || got.ID != want {
			t.Errorf("Get(%s) = %v, %v; want %s", ref, got, err, want)
		}
	}
	md, _ := multi.Digest()
	if _, err := s.Get("example.com/oci/multi@" + md.String()); err != nil {
		t.Errorf("Get by index digest: %v", err)
	}
	unnamed, err := s.Get(configName(t, other))
	if err != nil || len(unnamed.RepoTags) != 0 {
		t.Errorf("unnamed image %v, %v", unnamed, err)
	}
	if _, err := s.Get("docker.io/library/latest:latest"); !errors.Is(err, ErrNotFound) {
		t.Errorf("bare ref.name taken as a name: %v", err)
	}
	if _, err := s.Import(context.Background(), strings.NewReader("not a tar")); err == nil {
		t.Error("import of garbage succeeded")
	}
}

func tarDir(t testing.TB, dir string, w io.Writer) {
	tw := tar.NewWriter(w)
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNewDiscardsCrashLeftovers(t *testing.T) {
	reg := startRegistry(t, nil)
	s := newStore(t, nil)
	push(t, reg.host+"/app:1", twoLayerImage(t, "crash"))
	img, err := s.Pull(context.Background(), reg.host+"/app:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	// What a crash mid-pull leaves: a half layer in tmp and a layer renamed
	// into place but never recorded.
	half := filepath.Join(s.path("tmp"), "layer-123", "etc")
	orphan := s.layerDir(strings.Repeat("ab", 32))
	for _, d := range []string{half, orphan} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := s.FsInfo()
	s2, err := New(Options{Root: s.root, DB: s.db})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{half, orphan} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived New: %v", d, err)
		}
	}
	if got, err := s2.Get(img.ID); err != nil || got.ID != img.ID {
		t.Errorf("image lost: %v", err)
	}
	if after, _ := s2.FsInfo(); after != before {
		t.Errorf("FsInfo after restart %+v, before %+v", after, before)
	}
}

func TestPrepareRootfsManyLayers(t *testing.T) {
	reg := startRegistry(t, nil)
	s := newStore(t, nil)
	s.limits.MaxLayers = 1000
	tests := []struct {
		layers  int
		wantErr bool
	}{
		// 60 absolute layer paths overflow the one-page mount data; fd paths fit.
		{layers: 60},
		// The most a pull accepts (max_layers) fits too.
		{layers: 128},
		// Even /proc/self/fd/N names cannot fit this many (only a store
		// configured above the default max_layers pulls it).
		{layers: 300, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.layers), func(t *testing.T) {
			var ls []v1.Layer
			for i := range tc.layers {
				ls = append(ls, layerOf(t, []tarEntry{{name: fmt.Sprintf("f%03d", i), typ: tar.TypeReg, data: fmt.Sprint(i)}}))
			}
			ref := fmt.Sprintf("%s/many:%d", reg.host, tc.layers)
			push(t, ref, imageOf(t, v1.Config{}, ls...))
			img, err := s.Pull(context.Background(), ref, nil)
			if err != nil {
				t.Fatal(err)
			}
			target := mountTarget(t)
			root, err := s.PrepareRootfs(context.Background(), img.ID, "many", target, false)
			t.Cleanup(func() { _ = s.RemoveRootfs("many", target) })
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "over the kernel's") {
					t.Fatalf("err = %v, want a mount data overflow error", err)
				}
				if _, err := os.Stat(s.containerDir("many")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("failed prepare left its container dir: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"f000", fmt.Sprintf("f%03d", tc.layers-1)} {
				if _, err := os.Stat(filepath.Join(root, f)); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestPrepareRootfsRepeatedLayer(t *testing.T) {
	reg := startRegistry(t, nil)
	s := newStore(t, nil)
	a := layerOf(t, []tarEntry{{name: "f", typ: tar.TypeReg, data: "a"}})
	b := layerOf(t, []tarEntry{{name: "f", typ: tar.TypeReg, data: "b"}, {name: "g", typ: tar.TypeReg, data: "b"}})
	push(t, reg.host+"/aba:1", imageOf(t, v1.Config{}, a, b, a))
	img, err := s.Pull(context.Background(), reg.host+"/aba:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		id := fmt.Sprint("aba-", ro)
		target := mountTarget(t)
		root, err := s.PrepareRootfs(context.Background(), img.ID, id, target, ro)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.RemoveRootfs(id, target) })
		for p, want := range map[string]string{"f": "a", "g": "b"} {
			if got, err := os.ReadFile(filepath.Join(root, p)); err != nil || string(got) != want {
				t.Errorf("readOnly=%v: %s = %q, %v; want %q", ro, p, got, err, want)
			}
		}
	}
}

func TestWritableLayer(t *testing.T) {
	reg := startRegistry(t, nil)
	s := newStore(t, nil)
	push(t, reg.host+"/wl:1", twoLayerImage(t, "wl"))
	img, err := s.Pull(context.Background(), reg.host+"/wl:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	target := mountTarget(t)
	root, err := s.PrepareRootfs(context.Background(), img.ID, "wl", target, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.RemoveRootfs("wl", target) })
	if err := os.WriteFile(filepath.Join(root, "written"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	upper, err := s.WritableLayer("wl")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(filepath.Dir(upper)) != s.WritableLayersRoot() {
		t.Errorf("WritableLayer %s is not under WritableLayersRoot %s", upper, s.WritableLayersRoot())
	}
	if _, err := os.Stat(filepath.Join(upper, "written")); err != nil {
		t.Errorf("a file the container wrote is not in its writable layer: %v", err)
	}
	if _, err := s.WritableLayer("../x"); err == nil {
		t.Error("WritableLayer accepted an ID with a slash")
	}
}

// A layer another pull put in place after ensureLayer's first look (its
// flight already gone) is found by the second look, under the lock, instead
// of being unpacked again and failing to rename onto the first copy ("store
// layer: rename ...: file exists", seen in a stress run of an image that
// lists one layer twice). The layer here cannot be fetched, so only a
// second look passes.
func TestEnsureLayerSeesLayerLandedMeanwhile(t *testing.T) {
	s := newStore(t, nil)
	diffHex := strings.Repeat("ab", 32)
	beforeFlightCheck = func() {
		if err := os.MkdirAll(s.layerDir(diffHex), 0o755); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() { beforeFlightCheck = func() {} })
	if err := s.ensureLayer(context.Background(), unfetchableLayer{}, diffHex, nil); err != nil {
		t.Fatalf("ensureLayer with the layer landed meanwhile: %v", err)
	}
}

// unfetchableLayer is a layer whose content cannot be read.
type unfetchableLayer struct{ v1.Layer }

func (unfetchableLayer) Digest() (v1.Hash, error) {
	return v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("cd", 32)}, nil
}
func (unfetchableLayer) Compressed() (io.ReadCloser, error) {
	return nil, errors.New("unfetchable")
}
