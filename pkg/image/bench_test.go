package image

import (
	"archive/tar"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pod-shim/pod-shim/test/images"
)

// benchImage is busybox (test/images) plus a layer of host binaries, about
// 5 MiB unpacked: the size of a small real-world image.
func benchImage(b *testing.B) (v1.Image, int64) {
	b.Helper()
	bb, err := images.Busybox()
	if err != nil {
		b.Skip(err)
	}
	bbLayers, err := bb.Layers()
	if err != nil {
		b.Fatal(err)
	}
	paths, _ := filepath.Glob("/usr/bin/*")
	sort.Strings(paths)
	var entries []tarEntry
	var total int64
	entries = append(entries, tarEntry{name: "usr/", typ: tar.TypeDir, mode: 0o755}, tarEntry{name: "usr/bin/", typ: tar.TypeDir, mode: 0o755})
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() > 512<<10 {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		entries = append(entries, tarEntry{name: "usr/bin/" + filepath.Base(p), typ: tar.TypeReg, mode: 0o755, data: string(data)})
		total += fi.Size()
		if total > 3<<20 {
			break
		}
	}
	img := imageOf(b, v1.Config{Cmd: []string{"sh"}}, bbLayers[0], layerOf(b, entries))
	var compressed int64
	ls, _ := img.Layers()
	for _, l := range ls {
		sz, _ := l.Size()
		compressed += sz
	}
	return img, compressed
}

func BenchmarkPull(b *testing.B) {
	reg := startRegistry(b, nil)
	img, compressed := benchImage(b)
	ref := reg.host + "/bench:1"
	push(b, ref, img)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s := newStore(b, nil)
		b.StartTimer()
		if _, err := s.Pull(context.Background(), ref, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(compressed)/(1<<20), "MiB-compressed")
}

func BenchmarkPrepareRootfs(b *testing.B) {
	reg := startRegistry(b, nil)
	img, _ := benchImage(b)
	push(b, reg.host+"/bench:1", img)
	single, _ := images.Busybox()
	push(b, reg.host+"/single:1", single)
	s := newStore(b, nil)
	for _, tc := range []struct {
		name     string
		ref      string
		readOnly bool
	}{
		{"rw-2-layers", reg.host + "/bench:1", false},
		{"ro-2-layers", reg.host + "/bench:1", true},
		{"ro-1-layer-fastpath", reg.host + "/single:1", true},
	} {
		im, err := s.Pull(context.Background(), tc.ref, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			dir := b.TempDir()
			for i := 0; i < b.N; i++ {
				id := fmt.Sprintf("c%d", i)
				target := filepath.Join(dir, id)
				if _, err := s.PrepareRootfs(context.Background(), im.ID, id, target, tc.readOnly); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := s.RemoveRootfs(id, target); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
