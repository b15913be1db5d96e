package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// bombTar is a layer holding one file of size zero bytes.
func bombTar(t testing.TB, size int64) io.Reader {
	t.Helper()
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Name: "bomb", Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: testMtime})
		if err == nil {
			_, err = io.CopyN(tw, zeros{}, size)
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// compressedLayer compresses tar with compress into a layer ggcr pushes as is.
func compressedLayer(t testing.TB, tarStream io.Reader, compress func(io.Writer) io.WriteCloser) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	w := compress(&buf)
	if _, err := io.Copy(w, tarStream); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func gzipW(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) }

func zstdWindow(window int) func(io.Writer) io.WriteCloser {
	return func(w io.Writer) io.WriteCloser {
		zw, err := zstd.NewWriter(w, zstd.WithWindowSize(window), zstd.WithEncoderConcurrency(1))
		if err != nil {
			panic(err)
		}
		return zw
	}
}

// TestPullLimits pulls images over each limit: every pull fails with
// ErrLimit naming the config key, and leaves no image, layer or blob.
func TestPullLimits(t *testing.T) {
	reg := startRegistry(t, nil)
	small := layerOf(t, []tarEntry{{name: "f", typ: tar.TypeReg, data: "x"}})
	var many []v1.Layer
	for i := range DefaultLimits.MaxLayers + 1 {
		many = append(many, layerOf(t, []tarEntry{{name: fmt.Sprintf("f%d", i), typ: tar.TypeReg, data: fmt.Sprint(i)}}))
	}
	bigEnv := make([]string, 0, 64)
	for i := range 64 {
		bigEnv = append(bigEnv, fmt.Sprintf("V%d=%s", i, strings.Repeat("x", 1024)))
	}
	tests := []struct {
		name   string
		img    v1.Image
		limits func(*Limits)
		key    string
	}{
		{"too many layers", imageOf(t, v1.Config{}, many...), nil, "max_layers"},
		{"huge config", imageOf(t, v1.Config{Env: bigEnv}, small), func(l *Limits) { l.MaxConfigBytes = 32 << 10 }, "max_config_bytes"},
		{"huge manifest", imageOf(t, v1.Config{}, small, small, small), func(l *Limits) { l.MaxManifestBytes = 300 }, "max_manifest_bytes"},
		{"gzip bomb over the pull budget", imageOf(t, v1.Config{}, compressedLayer(t, bombTar(t, 64<<20), gzipW)), func(l *Limits) { l.MaxPullBytes = 8 << 20 }, "max_pull_bytes"},
		{"zstd window over the limit", imageOf(t, v1.Config{}, compressedLayer(t, bombTar(t, 4<<20), zstdWindow(8<<20))), func(l *Limits) { l.MaxZstdWindow = 1 << 20 }, "max_zstd_window_bytes"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, nil)
			if tc.limits != nil {
				tc.limits(&s.limits)
			}
			ref := fmt.Sprintf("%s/limits:%d", reg.host, i)
			push(t, ref, tc.img)
			_, err := s.Pull(context.Background(), ref, nil)
			if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("err = %v, want ErrLimit naming %s", err, tc.key)
			}
			if list, err := s.List(); err != nil || len(list) != 0 {
				t.Errorf("List after failure = %v, %v", list, err)
			}
			assertDirEmpty(t, s.path("layers"))
			assertDirEmpty(t, s.path("blobs/sha256"))
			assertDirEmpty(t, s.path("tmp"))
			if fs, _ := s.FsInfo(); fs.UsedBytes != 0 || fs.InodesUsed != 0 {
				t.Errorf("FsInfo after failure %+v", fs)
			}
		})
	}
}

// TestPullBudgetFits: a pull within max_pull_bytes succeeds; the budget is
// per pull, not per store.
func TestPullBudgetFits(t *testing.T) {
	reg := startRegistry(t, nil)
	s := newStore(t, nil)
	s.limits.MaxPullBytes = 2 << 20
	for i := range 3 {
		ref := fmt.Sprintf("%s/fits:%d", reg.host, i)
		push(t, ref, imageOf(t, v1.Config{}, compressedLayer(t, bombTar(t, 1<<20+int64(i)), gzipW)))
		if _, err := s.Pull(context.Background(), ref, nil); err != nil {
			t.Fatalf("pull %d: %v", i, err)
		}
	}
}

// TestPullTagAndDigest: repo:tag@digest pulls the digest, records only
// repo@digest, and leaves the local tag where it was.
func TestPullTagAndDigest(t *testing.T) {
	reg := startRegistry(t, nil)
	s := newStore(t, nil)
	a := imageOf(t, v1.Config{Cmd: []string{"a"}}, layerOf(t, []tarEntry{{name: "a", typ: tar.TypeReg, data: "a"}}))
	b := imageOf(t, v1.Config{Cmd: []string{"b"}}, layerOf(t, []tarEntry{{name: "b", typ: tar.TypeReg, data: "b"}}))
	push(t, reg.host+"/td:1", a)
	push(t, reg.host+"/td:2", b)
	imgA, err := s.Pull(context.Background(), reg.host+"/td:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	db := digestOfImage(t, b)
	ref := reg.host + "/td:1@" + db.String()
	imgB, err := s.Pull(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if imgB.ID != configName(t, b) {
		t.Fatalf("pulled %s, want image b %s", imgB.ID, configName(t, b))
	}
	repo, err := name.NewRepository(reg.host+"/td", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	wantDigest := repo.Name() + "@" + db.String()
	if len(imgB.RepoTags) != 0 || len(imgB.RepoDigests) != 1 || imgB.RepoDigests[0] != wantDigest {
		t.Errorf("image b tags %v digests %v, want no tag and %s", imgB.RepoTags, imgB.RepoDigests, wantDigest)
	}
	got, err := s.Get(reg.host + "/td:1")
	if err != nil || got.ID != imgA.ID {
		t.Errorf("td:1 now resolves to %v (%v), want image a %s", got, err, imgA.ID)
	}
	if got, err := s.Get(ref); err != nil || got.ID != imgB.ID {
		t.Errorf("Get(%s) = %v, %v", ref, got, err)
	}
}
