package image

import (
	"archive/tar"
	"bytes"
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

// unpackBenchTar is an uncompressed layer of files entries of size bytes
// each, spread over dirs directories, in the order docker writes them.
func unpackBenchTar(b *testing.B, dirs, files, size int) []byte {
	b.Helper()
	data := string(make([]byte, size))
	entries := []tarEntry{{name: "usr/", typ: tar.TypeDir, mode: 0o755}}
	for d := range dirs {
		dir := fmt.Sprintf("usr/d%03d/", d)
		entries = append(entries, tarEntry{name: dir, typ: tar.TypeDir, mode: 0o755})
		for f := range files / dirs {
			entries = append(entries, tarEntry{name: fmt.Sprintf("%sf%04d", dir, f), typ: tar.TypeReg, mode: 0o644, data: data})
			if f%10 == 0 {
				entries = append(entries, tarEntry{name: fmt.Sprintf("%sl%04d", dir, f), typ: tar.TypeSymlink, link: fmt.Sprintf("f%04d", f)})
			}
		}
	}
	return buildTar(b, entries)
}

// BenchmarkUnpackLayer measures the tar extractor alone (no network, no
// decompression): a busybox-size layer (~400 entries) and a bigger one
// (~11,000 entries, 88 MiB), the shapes of a small and a distro image.
func BenchmarkUnpackLayer(b *testing.B) {
	requireRoot(b)
	for _, tc := range []struct {
		name               string
		dirs, files, bytes int
	}{
		{"busybox-size", 4, 400, 2 << 10},
		{"bigger", 100, 10000, 8 << 10},
	} {
		raw := unpackBenchTar(b, tc.dirs, tc.files, tc.bytes)
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := filepath.Join(b.TempDir(), "l")
				if err := os.Mkdir(dir, 0o700); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := unpackLayer(context.Background(), bytes.NewReader(raw), dir); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
