// Package images builds the container images pod-shim's tests use, offline and
// deterministically, and serves them from an in-process registry on 127.0.0.1.
//
// No test may fetch an image from the internet (../../TESTING.md), so the
// busybox image is assembled from the host's busybox-static binary. Every
// timestamp, owner and ordering is fixed, so building it twice on the same host
// gives the same digest: tests can compare image ids and repo digests exactly.
package images

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BusyboxPath is where the host's static busybox lives (Debian's busybox-static).
var BusyboxPath = "/bin/busybox"

// Epoch is the fixed time stamped on every file, history entry and config, so
// that digests do not depend on when the image was built.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// IndexHTML is what the busybox image serves from /var/www/index.html.
const IndexHTML = "<html><body>hello from pod-shim busybox</body></html>\n"

// DefaultPath is the PATH in the busybox image's config.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

var (
	busyboxOnce sync.Once
	busyboxImg  v1.Image
	busyboxErr  error
)

// Busybox returns an image holding the host's static busybox with a symlink
// for every applet, /etc/passwd and /etc/group with root and nobody, a
// world-writable /tmp and /var/www/index.html (IndexHTML). Its config runs
// ["sh"] with a standard PATH. The image is built once per process.
func Busybox() (v1.Image, error) {
	busyboxOnce.Do(func() { busyboxImg, busyboxErr = buildBusybox() })
	return busyboxImg, busyboxErr
}

func buildBusybox() (v1.Image, error) {
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("read busybox (install busybox-static): %w", err)
	}
	out, err := exec.Command(BusyboxPath, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", BusyboxPath, err)
	}
	applets := strings.Fields(string(out))
	if len(applets) == 0 {
		return nil, errors.New("busybox lists no applets")
	}

	files := []File{
		{Name: "bin/busybox", Mode: 0o755, Data: bin},
		{Name: "etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{Name: "etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{Name: "var/www/index.html", Mode: 0o644, Data: []byte(IndexHTML)},
		{Name: "tmp", Mode: 0o1777, Dir: true},
		{Name: "root", Mode: 0o700, Dir: true},
		// Mount points the runtime fills; present so a read-only rootfs still works.
		{Name: "proc", Mode: 0o755, Dir: true},
		{Name: "sys", Mode: 0o755, Dir: true},
		{Name: "dev", Mode: 0o755, Dir: true},
	}
	for _, a := range applets {
		a = strings.TrimPrefix(a, "/")
		if a == "bin/busybox" {
			continue
		}
		files = append(files, File{Name: a, Link: "/bin/busybox"})
	}
	layer, err := Layer(files)
	if err != nil {
		return nil, err
	}
	return Image([]v1.Layer{layer}, v1.Config{
		Cmd: []string{"sh"},
		Env: []string{DefaultPath},
	})
}

// File is one entry of a layer built by Layer.
type File struct {
	Name string // relative path, "/"-separated
	Mode int64  // permission bits (and sticky etc.)
	Data []byte // regular file content
	Link string // symlink target; makes the entry a symlink
	Dir  bool   // a directory
}

// Layer returns a gzip layer holding files (and their missing parent
// directories), sorted by name, owned by root, stamped with Epoch.
func Layer(files []File) (v1.Layer, error) {
	byName := map[string]File{}
	for _, f := range files {
		f.Name = path.Clean(strings.TrimPrefix(f.Name, "/"))
		byName[f.Name] = f
		for d := path.Dir(f.Name); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := byName[d]; !ok {
				byName[d] = File{Name: d, Mode: 0o755, Dir: true}
			}
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		f := byName[n]
		h := &tar.Header{
			Name:    f.Name,
			Mode:    f.Mode,
			ModTime: Epoch,
			Format:  tar.FormatPAX,
		}
		switch {
		case f.Dir:
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		case f.Link != "":
			h.Typeflag = tar.TypeSymlink
			h.Linkname = f.Link
			h.Mode = 0o777
		default:
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", f.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, fmt.Errorf("tar data %s: %w", f.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

// Image stacks layers on an empty image for linux/GOARCH with cfg, all
// timestamps set to Epoch.
func Image(layers []v1.Layer, cfg v1.Config) (v1.Image, error) {
	adds := make([]mutate.Addendum, 0, len(layers))
	for _, l := range layers {
		adds = append(adds, mutate.Addendum{
			Layer:   l,
			History: v1.History{Created: v1.Time{Time: Epoch}, CreatedBy: "pod-shim test/images", Comment: "offline test layer"},
		})
	}
	img, err := mutate.Append(empty.Image, adds...)
	if err != nil {
		return nil, fmt.Errorf("append layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = runtime.GOARCH
	cf.OS = "linux"
	cf.Created = v1.Time{Time: Epoch}
	cf.Config = cfg
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// ArchiveTag is the tag WriteArchive gives the busybox image by default. It is
// not a Docker Hub name on purpose: docker-save archives written by
// go-containerregistry spell Hub names "index.docker.io/...", which runtimes
// normalise differently.
const ArchiveTag = "localhost/pod-shim-test/busybox:1.36"

// WriteArchive writes img as a docker-save archive (manifest.json, config,
// layers) tagged tag, the format `docker save` and `pod-shim images import` use.
func WriteArchive(file, tag string, img v1.Image) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("parse tag %q: %w", tag, err)
	}
	if err := tarball.WriteToFile(file, ref, img); err != nil {
		return fmt.Errorf("write archive %s: %w", file, err)
	}
	return nil
}

// PauseTag is the tag Pause images get in archives, for runtimes (containerd)
// that need a sandbox image and cannot pull one offline.
const PauseTag = "localhost/pod-shim-test/pause:3.10"

// Pause returns an image whose entrypoint is the static pause binary at
// binary (pod-shim's bin/pod-shim-pause), installed as /pause.
func Pause(binary string) (v1.Image, error) {
	b, err := os.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("read pause binary: %w", err)
	}
	layer, err := Layer([]File{{Name: "pause", Mode: 0o755, Data: b}})
	if err != nil {
		return nil, err
	}
	return Image([]v1.Layer{layer}, v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"})
}

// WriteArchives writes several images, keyed by tag, into one docker-save archive.
func WriteArchives(file string, byTag map[string]v1.Image) error {
	refs := map[name.Reference]v1.Image{}
	for tag, img := range byTag {
		ref, err := name.NewTag(tag)
		if err != nil {
			return fmt.Errorf("parse tag %q: %w", tag, err)
		}
		refs[ref] = img
	}
	if err := tarball.MultiRefWriteToFile(file, refs); err != nil {
		return fmt.Errorf("write archive %s: %w", file, err)
	}
	return nil
}
