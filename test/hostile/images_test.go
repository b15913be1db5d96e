package hostile

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"golang.org/x/sys/unix"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
	"github.com/pod-shim/pod-shim/test/images"
)

// maxDaemonRSS is what the daemon may reach while pulling every attack.
const maxDaemonRSS = 256 << 20

// pullBudget is the max_pull_bytes the suite's daemon runs with: well above
// busybox, well below the bombs.
const pullBudget = 64 << 20

// entry is one tar entry of an attack layer, written in this order: the
// attacks depend on entry order, which images.Layer would sort away.
type entry struct {
	name     string
	typ      byte
	data     string
	link     string
	mode     int64
	devmajor int64
}

func attackLayer(t *testing.T, entries []entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Size: int64(len(e.data)), ModTime: images.Epoch, Devmajor: e.devmajor, Format: tar.FormatPAX}
		if h.Mode == 0 {
			h.Mode = 0o755
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.data))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// onBusybox stacks layers on busybox, so what survives the pull can run.
func onBusybox(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	bb, err := images.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(bb, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// rawLayer is a layer whose compressed bytes and diffID the test made by
// hand (bombs): ggcr never decompresses it.
type rawLayer struct {
	compressed []byte
	diffID     v1.Hash
}

func (l rawLayer) Digest() (v1.Hash, error) {
	sum := sha256.Sum256(l.compressed)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}, nil
}
func (l rawLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l rawLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.compressed)), nil
}
func (l rawLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, fmt.Errorf("bomb layers are never decompressed by the test")
}
func (l rawLayer) Size() (int64, error)                { return int64(len(l.compressed)), nil }
func (l rawLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }

// bombTar writes a layer tar of one file of n zero bytes to w.
func bombTar(t *testing.T, n int64) (header []byte, zeros int64) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "bomb", Typeflag: tar.TypeReg, Mode: 0o644, Size: n, ModTime: images.Epoch, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), n + 1024 // the content, then the end-of-archive blocks
}

func diffIDOf(header []byte, zeros int64) v1.Hash {
	h := sha256.New()
	h.Write(header)
	io.CopyN(h, zeroReader{}, zeros)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// gzipBomb is a gzip layer that inflates to a file of n zero bytes.
func gzipBomb(t *testing.T, n int64) v1.Layer {
	header, zeros := bombTar(t, n)
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(header)
	io.CopyN(zw, zeroReader{}, zeros)
	zw.Close()
	return rawLayer{compressed: buf.Bytes(), diffID: diffIDOf(header, zeros)}
}

// zstdBomb is a zstd frame, written by hand, that asks for a 512 MiB window
// (the most a default decoder accepts) and decodes to a file of n zero
// bytes, 128 KiB per 4-byte RLE block: a decoder that honours the window
// keeps up to 512 MiB of history.
func zstdBomb(t *testing.T, n int64) v1.Layer {
	header, zeros := bombTar(t, n)
	var buf bytes.Buffer
	buf.Write([]byte{0x28, 0xb5, 0x2f, 0xfd})
	buf.WriteByte(0x00)    // frame header: no content size, no checksum, no dictionary
	buf.WriteByte(19 << 3) // window descriptor: 2^(10+19) = 512 MiB
	block := func(typ, size int, last bool) {
		v := uint32(size)<<3 | uint32(typ)<<1
		if last {
			v |= 1
		}
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], v)
		buf.Write(b[:3])
	}
	block(0, len(header), false) // raw block: the tar header
	buf.Write(header)
	const maxBlock = 128 << 10
	for left := zeros; left > 0; {
		size := min(left, maxBlock)
		left -= size
		block(1, int(size), left == 0) // RLE block of zeros
		buf.WriteByte(0)
	}
	return rawLayer{compressed: buf.Bytes(), diffID: diffIDOf(header, zeros)}
}

// treeSnapshot describes every file under dir: type, mode, owner, size,
// link count, times, content hash, link text, xattr names.
func treeSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		d := fmt.Sprintf("mode=%o uid=%d size=%d nlink=%d mtime=%d", st.Mode, st.Uid, st.Size, st.Nlink, st.Mtim.Nano())
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, _ := os.ReadFile(p)
			d += fmt.Sprintf(" sha=%x", sha256.Sum256(b))
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			d += " -> " + l
		}
		if sz, _ := unix.Llistxattr(p, nil); sz > 0 {
			b := make([]byte, sz)
			sz, _ = unix.Llistxattr(p, b)
			d += " xattrs=" + string(bytes.ReplaceAll(b[:sz], []byte{0}, []byte{','}))
		}
		out[strings.TrimPrefix(p, dir)] = d
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffSnapshots(before, after map[string]string) []string {
	var diffs []string
	for k, v := range before {
		if after[k] != v {
			diffs = append(diffs, fmt.Sprintf("%q: %s -> %s", k, v, after[k]))
		}
	}
	for k, v := range after {
		if _, ok := before[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%q appeared: %s", k, v))
		}
	}
	sort.Strings(diffs)
	return diffs
}

// daemonHWM is the daemon's peak resident set size so far.
func daemonHWM(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("daemon status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in the daemon's status")
	return 0
}

// binaryKnowsLimits reports whether the daemon under test has the image
// limit keys (an older build, run to show the attacks work on it, would
// refuse to start with them).
func binaryKnowsLimits(t *testing.T, bin string) bool {
	out, err := exec.Command(bin, "config", "default").Output()
	if err != nil {
		t.Fatalf("%s config default: %v", bin, err)
	}
	return bytes.Contains(out, []byte("max_pull_bytes"))
}

// attack is one crafted image and what must happen when it is pulled.
type attack struct {
	name string
	img  func(t *testing.T, canary string) v1.Image
	// pullErr, when set, is a substring of the error the pull must fail with.
	pullErr string
	// run, when set, runs after a successful pull (CRI calls on the image).
	run func(t *testing.T, d *harness.Daemon, ref string)
}

// TestHostileImages pulls crafted images through a real daemon from a
// registry on 127.0.0.1. Each attack targets a canary tree on the host (the
// paths the symlinks name); the test fails if anything there changes, if a
// pull that must fail succeeds or leaves layers or temp files behind, if a
// CRI call hangs, or if the daemon's peak RSS passes 256 MiB.
func TestHostileImages(t *testing.T) {
	harness.RequireHost(t, harness.Host{Suite: "hostile image test", Bins: []string{"runc"}, Plugins: []string{"bridge", "host-local"}, Files: []string{images.BusyboxPath}})
	bin := harness.Binary(t)
	cfg := ""
	if binaryKnowsLimits(t, bin) {
		cfg = fmt.Sprintf("[registry]\nmax_pull_bytes = %d\n", pullBudget)
	} else {
		t.Logf("%s has no image limit keys: running without max_pull_bytes", bin)
	}
	d := harness.Start(t, harness.Options{Tag: "himg", Namespace: "hostile-images", Subnet16: "10.246", Config: cfg})

	reg, err := images.StartRegistry("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })

	// The canary: a host tree every symlink attack aims at. Its "victim"
	// dir has the same name as the dirs the layers make implicitly.
	canary, err := os.MkdirTemp("/tmp", "hostile-canary-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(canary) })
	for _, p := range []string{"victim/keep", "victim/sub/f", "passwd"} {
		os.MkdirAll(filepath.Join(canary, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(canary, p), []byte("canary "+p+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	before := treeSnapshot(t, canary)
	layersDir := filepath.Join(d.Root, "image", "layers")

	// The symlink attacks, each also through a relative path that climbs
	// from the layer's temp dir (<root>/image/tmp/layer-*/) to the canary.
	rel := strings.Repeat("../", strings.Count(filepath.Join(d.Root, "image", "tmp", "layer-x"), "/")+2) + strings.TrimPrefix(canary, "/")
	swap := func(link string) func(t *testing.T, canary string) v1.Image {
		return func(t *testing.T, canary string) v1.Image {
			return onBusybox(t, attackLayer(t, []entry{
				{name: "a/victim/seed", typ: tar.TypeReg, data: "x"}, // makes a/ and a/victim/ implicitly
				{name: "a", typ: tar.TypeSymlink, link: link},        // the parent swap
				{name: "a/victim/pwned", typ: tar.TypeReg, data: "written through the swapped parent\n"},
				{name: "a/victim/.wh.keep", typ: tar.TypeReg},                    // whiteout through it
				{name: "a/victim/hl", typ: tar.TypeLink, link: "a/victim/pwned"}, // hard link through it
				{name: "a/victim/sub/.wh..wh..opq", typ: tar.TypeReg},            // opaque marker through it
			}))
		}
	}
	attacks := []attack{
		{name: "parent swap to an absolute host path", img: swap(canary), pullErr: "no such file"},
		{name: "parent swap to a relative path climbing out", img: swap(rel), pullErr: "no such file"},
		{name: "parent swap to / resolves inside the image", img: swap("/"), run: runTrue},
		{name: "absolute and dot-dot symlinks as parents", img: func(t *testing.T, canary string) v1.Image {
			return onBusybox(t, attackLayer(t, []entry{
				{name: "abs", typ: tar.TypeSymlink, link: canary + "/victim"},
				{name: "abs/pwned", typ: tar.TypeReg, data: "x"},
				{name: "dd", typ: tar.TypeSymlink, link: rel + "/victim"},
				{name: "dd/pwned", typ: tar.TypeReg, data: "x"},
				{name: "dd/.wh.keep", typ: tar.TypeReg},
				{name: "hl", typ: tar.TypeLink, link: rel + "/passwd"},
			}))
		}, pullErr: "unpack"},
		{name: "gzip bomb", img: func(t *testing.T, _ string) v1.Image { return onBusybox(t, gzipBomb(t, 512<<20)) }, pullErr: "max_pull_bytes"},
		{name: "zstd bomb with a 512 MiB window", img: func(t *testing.T, _ string) v1.Image { return onBusybox(t, zstdBomb(t, 1<<30)) }, pullErr: "max_zstd_window_bytes"},
		{name: "130 layers", img: func(t *testing.T, _ string) v1.Image {
			var ls []v1.Layer
			for i := range 129 {
				ls = append(ls, attackLayer(t, []entry{{name: fmt.Sprintf("f%03d", i), typ: tar.TypeReg, data: strconv.Itoa(i)}}))
			}
			return onBusybox(t, ls...)
		}, pullErr: "max_layers"},
		{name: "6 MiB manifest", img: func(t *testing.T, _ string) v1.Image {
			return mutate.Annotations(onBusybox(t), map[string]string{"pad": strings.Repeat("x", 6<<20)}).(v1.Image)
		}, pullErr: "max_manifest_bytes"},
		{name: "16 MiB config", img: func(t *testing.T, _ string) v1.Image {
			img := onBusybox(t)
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			cf = cf.DeepCopy()
			cf.Config.Env = append(cf.Config.Env, "PAD="+strings.Repeat("x", 16<<20))
			img, err = mutate.ConfigFile(img, cf)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}, pullErr: "max_config_bytes"},
		{name: "FIFO /etc/passwd", img: func(t *testing.T, _ string) v1.Image {
			return onBusybox(t, attackLayer(t, []entry{{name: "etc/passwd", typ: tar.TypeFifo, mode: 0o644}}))
		}, run: createFails("is a FIFO")},
		{name: "device /etc/group", img: func(t *testing.T, _ string) v1.Image {
			return onBusybox(t, attackLayer(t, []entry{{name: "etc/group", typ: tar.TypeChar, mode: 0o644, devmajor: 1}}))
		}, run: createFails("is a device node")},
		{name: "symlinked /etc/passwd", img: func(t *testing.T, canary string) v1.Image {
			return onBusybox(t, attackLayer(t, []entry{{name: "etc/passwd", typ: tar.TypeSymlink, link: canary + "/passwd"}}))
		}, run: createFails("is a symlink")},
	}
	t.Cleanup(func() {
		if pid := d.Pid(); pid != 0 {
			t.Logf("daemon peak RSS over all attacks: %d MiB", daemonHWM(t, pid)>>20)
		}
	})
	for i, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			ref, _, err := reg.Push(fmt.Sprintf("attack%d:1", i), a.img(t, canary))
			if err != nil {
				t.Fatal(err)
			}
			layersBefore, _ := os.ReadDir(layersDir)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			start := time.Now()
			_, err = d.IS.PullImage(ctx, &cri.PullImageRequest{Image: &cri.ImageSpec{Image: ref}})
			t.Logf("pull took %v: %v", time.Since(start).Round(time.Millisecond), err)
			if diffs := diffSnapshots(before, treeSnapshot(t, canary)); len(diffs) > 0 {
				t.Errorf("the pull changed the host outside pod-shim's dirs:\n%s", strings.Join(diffs, "\n"))
				restoreCanary(t, canary)
				before = treeSnapshot(t, canary)
			}
			if hwm := daemonHWM(t, d.Pid()); hwm > maxDaemonRSS {
				t.Errorf("daemon peak RSS %d MiB, over %d MiB", hwm>>20, maxDaemonRSS>>20)
			}
			if a.pullErr != "" {
				if err == nil || !strings.Contains(err.Error(), a.pullErr) {
					t.Fatalf("pull: err = %v, want a failure naming %q", err, a.pullErr)
				}
				if r, err := d.IS.ImageStatus(harness.Ctx(t), &cri.ImageStatusRequest{Image: &cri.ImageSpec{Image: ref}}); err != nil || r.Image != nil {
					t.Errorf("ImageStatus after a failed pull: %v, %v", r.GetImage(), err)
				}
				layersAfter, _ := os.ReadDir(layersDir)
				if len(layersAfter) != len(layersBefore) {
					t.Errorf("the failed pull left %d layers behind", len(layersAfter)-len(layersBefore))
				}
				if ents, _ := os.ReadDir(filepath.Join(d.Root, "image", "tmp")); len(ents) != 0 {
					t.Errorf("the failed pull left %d entries in the image tmp dir", len(ents))
				}
				return
			}
			if err != nil {
				t.Fatalf("pull: %v", err)
			}
			if a.run != nil {
				a.run(t, d, ref)
				if diffs := diffSnapshots(before, treeSnapshot(t, canary)); len(diffs) > 0 {
					t.Errorf("running the image changed the host:\n%s", strings.Join(diffs, "\n"))
				}
			}
		})
	}
}

// restoreCanary puts the canary back after a failed case, so the next case
// is judged on its own.
func restoreCanary(t *testing.T, canary string) {
	os.RemoveAll(filepath.Join(canary, "victim"))
	for _, p := range []string{"victim/keep", "victim/sub/f", "passwd"} {
		os.MkdirAll(filepath.Join(canary, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(canary, p), []byte("canary "+p+"\n"), 0o644)
	}
}

// runTrue runs the image's shell to completion in a pod, then stops and
// removes the pod: what a pull accepted must still run.
func runTrue(t *testing.T, d *harness.Daemon, ref string) {
	t.Helper()
	pod := d.PodConfig("run-" + harness.RandHex(3))
	id := d.RunPod(pod)
	ctr := d.StartContainer(id, pod, harness.ContainerConfig("c", ref, "sh", "-c", "ls / >/dev/null"))
	harness.Eventually(t, "container exits", time.Minute, func() error {
		if s := d.ContainerStatus(ctr); s.State != cri.ContainerState_CONTAINER_EXITED {
			return harness.ErrNotYet
		} else if s.ExitCode != 0 {
			return fmt.Errorf("exit code %d: %s", s.ExitCode, s.Message)
		}
		return nil
	})
	stopRemove(t, d, id)
}

// createFails wants CreateContainer to fail within a second with msg, and
// the pod to stop and go away after it.
func createFails(msg string) func(t *testing.T, d *harness.Daemon, ref string) {
	return func(t *testing.T, d *harness.Daemon, ref string) {
		t.Helper()
		pod := d.PodConfig("pw-" + harness.RandHex(3))
		id := d.RunPod(pod)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		_, err := d.RS.CreateContainer(ctx, &cri.CreateContainerRequest{PodSandboxId: id, Config: harness.ContainerConfig("c", ref, "true"), SandboxConfig: pod})
		took := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("CreateContainer: err = %v after %v, want %q", err, took, msg)
		} else if took > time.Second {
			t.Errorf("CreateContainer took %v to refuse", took)
		}
		stopRemove(t, d, id)
	}
}

func stopRemove(t *testing.T, d *harness.Daemon, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.RS.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Errorf("StopPodSandbox: %v", err)
	}
	if _, err := d.RS.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Errorf("RemovePodSandbox: %v", err)
	}
}

// TestTagAndDigestPullsByDigest: repo:tag@digest pulls the digest and
// records only repo@digest; the local tag keeps pointing where it did.
func TestTagAndDigestPullsByDigest(t *testing.T) {
	harness.RequireHost(t, harness.Host{Suite: "hostile image test", Bins: []string{"runc"}, Plugins: []string{"bridge", "host-local"}, Files: []string{images.BusyboxPath}})
	d := harness.Start(t, harness.Options{Tag: "htag", Namespace: "hostile-images", Subnet16: "10.246"})
	reg, err := images.StartRegistry("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	a := onBusybox(t, attackLayer(t, []entry{{name: "which", typ: tar.TypeReg, data: "a"}}))
	b := onBusybox(t, attackLayer(t, []entry{{name: "which", typ: tar.TypeReg, data: "b"}}))
	refA, _, err := reg.Push("td:1", a)
	if err != nil {
		t.Fatal(err)
	}
	_, digestB, err := reg.Push("td:2", b)
	if err != nil {
		t.Fatal(err)
	}
	pull := func(ref string) string {
		r, err := d.IS.PullImage(harness.Ctx(t), &cri.PullImageRequest{Image: &cri.ImageSpec{Image: ref}})
		if err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
		return r.ImageRef
	}
	idA := pull(refA)
	mixed := refA + "@" + digestB.String()
	idB := pull(mixed)
	if idA == idB {
		t.Fatalf("%s pulled the tag's image %s, not the digest's", mixed, idA)
	}
	st, err := d.IS.ImageStatus(harness.Ctx(t), &cri.ImageStatusRequest{Image: &cri.ImageSpec{Image: idB}})
	if err != nil || st.Image == nil {
		t.Fatalf("ImageStatus %s: %v", idB, err)
	}
	repo := strings.TrimSuffix(refA, ":1")
	if len(st.Image.RepoTags) != 0 || len(st.Image.RepoDigests) != 1 || st.Image.RepoDigests[0] != repo+"@"+digestB.String() {
		t.Errorf("digest-pulled image: tags %v digests %v, want no tag and %s@%s", st.Image.RepoTags, st.Image.RepoDigests, repo, digestB)
	}
	st, err = d.IS.ImageStatus(harness.Ctx(t), &cri.ImageStatusRequest{Image: &cri.ImageSpec{Image: refA}})
	if err != nil || st.Image == nil || st.Image.Id != idA {
		t.Errorf("%s now names %v (%v), want %s: the local tag moved", refA, st.GetImage().GetId(), err, idA)
	}
}
