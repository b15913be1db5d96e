// Command images writes the images `kubeadm init` v1.37 runs, built offline
// from binaries compiled from the Go module proxy, into one docker-save
// archive: the preload a kind node carries, loaded with `pod-shim images
// import` (hack/cluster.sh) or `ctr images import` (deploy/kind's stand-in).
//
//	go run ./test/cluster/images --kube-dir DIR --etcd-dir DIR --coredns FILE --pause FILE --out FILE
//
// Each image holds its one binary where the upstream image has it (the
// control-plane binaries in /usr/local/bin, found through PATH because kubeadm
// names them by command; /coredns as CoreDNS's entrypoint) and nothing else,
// except kube-proxy's, which also carries the host's iptables-nft and the
// shared objects it loads (kube-proxy's iptables mode execs iptables,
// iptables-save and iptables-restore). Every file is stamped with
// images.Epoch, so the same binaries give the same digests.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/pod-shim/pod-shim/test/images"
)

func main() {
	kubeDir := flag.String("kube-dir", "/var/cache/pod-shim-ci/kube/v1.37.2", "dir of kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy (hack/build-kube.sh)")
	kubeVersion := flag.String("kube-version", "v1.37.2", "tag of the Kubernetes images")
	etcdDir := flag.String("etcd-dir", "/var/cache/pod-shim-ci/etcd/v3.7.0", "dir of etcd and etcdctl (hack/build-etcd.sh)")
	etcdTag := flag.String("etcd-tag", "3.7.0-0", "tag of the etcd image (kubeadm's DefaultEtcdVersion)")
	coredns := flag.String("coredns", "/var/cache/pod-shim-ci/coredns/v1.14.6/coredns", "coredns binary (hack/build-coredns.sh)")
	corednsTag := flag.String("coredns-tag", "v1.14.6", "tag of the CoreDNS image")
	pause := flag.String("pause", "bin/pod-shim-pause", "static pause binary (hack/build.sh)")
	pauseTag := flag.String("pause-tag", "3.10.2", "tag of the pause image (kubeadm's PauseVersion)")
	xtables := flag.String("xtables", "/usr/sbin/xtables-nft-multi", "the host's iptables-nft multi-call binary, for kube-proxy's image")
	out := flag.String("out", "", "docker-save archive to write")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "cluster images: --out is required")
		os.Exit(2)
	}
	set, err := build(*kubeDir, *kubeVersion, *etcdDir, *etcdTag, *coredns, *corednsTag, *pause, *pauseTag, *xtables)
	if err == nil {
		err = images.WriteArchives(*out, set)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster images:", err)
		os.Exit(1)
	}
	tags := make([]string, 0, len(set))
	for t := range set {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	for _, t := range tags {
		d, _ := set[t].Digest()
		fmt.Printf("%s\t%s\n", t, d)
	}
}

const path = "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"

func build(kubeDir, kubeVersion, etcdDir, etcdTag, coredns, corednsTag, pause, pauseTag, xtables string) (map[string]v1.Image, error) {
	set := map[string]v1.Image{}
	for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		img, err := binaryImage([]string{filepath.Join(kubeDir, name)}, "usr/local/bin", nil, v1.Config{Env: []string{path}})
		if err != nil {
			return nil, err
		}
		set["registry.k8s.io/"+name+":"+kubeVersion] = img
	}

	proxy, err := kubeProxyImage(filepath.Join(kubeDir, "kube-proxy"), xtables)
	if err != nil {
		return nil, err
	}
	set["registry.k8s.io/kube-proxy:"+kubeVersion] = proxy

	img, err := binaryImage([]string{filepath.Join(etcdDir, "etcd"), filepath.Join(etcdDir, "etcdctl")}, "usr/local/bin",
		[]images.File{{Name: "var/lib/etcd", Mode: 0o700, Dir: true}, {Name: "tmp", Mode: 0o1777, Dir: true}},
		v1.Config{Env: []string{path}})
	if err != nil {
		return nil, err
	}
	set["registry.k8s.io/etcd:"+etcdTag] = img

	if set["registry.k8s.io/coredns/coredns:"+corednsTag], err = corednsImage(coredns); err != nil {
		return nil, err
	}

	if set["registry.k8s.io/pause:"+pauseTag], err = images.Pause(pause); err != nil {
		return nil, err
	}
	return set, nil
}

// binaryImage puts each binary into dir, plus extra entries.
func binaryImage(bins []string, dir string, extra []images.File, cfg v1.Config) (v1.Image, error) {
	files := append([]images.File(nil), extra...)
	for _, b := range bins {
		data, err := os.ReadFile(b)
		if err != nil {
			return nil, fmt.Errorf("read %s (build it first): %w", b, err)
		}
		files = append(files, images.File{Name: dir + "/" + filepath.Base(b), Mode: 0o755, Data: data})
	}
	layer, err := images.Layer(files)
	if err != nil {
		return nil, err
	}
	return images.Image([]v1.Layer{layer}, cfg)
}

// kubeProxyImage holds kube-proxy and iptables-nft with the shared objects
// ldd reports for it and for every xtables extension it may dlopen. The
// layout mirrors a merged-/usr Debian (lib and lib64 link into usr), so the
// loader path and the library search path the host binaries were linked
// with hold inside the image.
func kubeProxyImage(kubeProxy, xtables string) (v1.Image, error) {
	kp, err := os.ReadFile(kubeProxy)
	if err != nil {
		return nil, fmt.Errorf("read %s (build it first): %w", kubeProxy, err)
	}
	xt, err := os.ReadFile(xtables)
	if err != nil {
		return nil, fmt.Errorf("read %s (apt-get install iptables): %w", xtables, err)
	}
	files := []images.File{
		{Name: "usr/local/bin/kube-proxy", Mode: 0o755, Data: kp},
		{Name: "usr/sbin/xtables-nft-multi", Mode: 0o755, Data: xt},
		{Name: "lib", Link: "usr/lib"},
		{Name: "lib64", Link: "usr/lib64"},
		{Name: "sbin", Link: "usr/sbin"},
		{Name: "run", Mode: 0o755, Dir: true},
		{Name: "tmp", Mode: 0o1777, Dir: true},
		// iptables-nft reads protocol and service names from here.
		{Name: "etc/protocols", Mode: 0o644, Data: mustRead("/etc/protocols")},
	}
	// kube-proxy runs the plain names; the nft backend is the one the host's
	// kernel rules are written with here (iptables -V says nf_tables).
	for _, n := range []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"} {
		files = append(files, images.File{Name: "usr/sbin/" + n, Link: "xtables-nft-multi"})
	}
	elfs := []string{xtables}
	extDir, err := xtablesLibDir(xtables)
	if err != nil {
		return nil, err
	}
	exts, err := filepath.Glob(filepath.Join(extDir, "*.so"))
	if err != nil || len(exts) == 0 {
		return nil, fmt.Errorf("no xtables extensions in %s", extDir)
	}
	for _, e := range exts {
		data, err := os.ReadFile(e)
		if err != nil {
			return nil, err
		}
		files = append(files, images.File{Name: usrPath(e), Mode: 0o644, Data: data})
	}
	elfs = append(elfs, exts...)
	libs, err := sharedObjects(elfs)
	if err != nil {
		return nil, err
	}
	for _, l := range libs {
		data, err := os.ReadFile(l) // follows the soname symlink to the file
		if err != nil {
			return nil, err
		}
		files = append(files, images.File{Name: usrPath(l), Mode: 0o755, Data: data})
	}
	if err := checkProtocols(files); err != nil {
		return nil, err
	}
	layer, err := images.Layer(files)
	if err != nil {
		return nil, err
	}
	return images.Image([]v1.Layer{layer}, v1.Config{Env: []string{path}})
}

func mustRead(p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	return b
}

func checkProtocols(files []images.File) error {
	for _, f := range files {
		if f.Name == "etc/protocols" && len(f.Data) == 0 {
			return errors.New("/etc/protocols is missing on the host (apt-get install netbase)")
		}
	}
	return nil
}

// usrPath maps a host path to where it lives in the merged-/usr image:
// /lib/x/y -> usr/lib/x/y, /lib64/ld.so -> usr/lib64/ld.so.
func usrPath(p string) string {
	p = strings.TrimPrefix(filepath.Clean(p), "/")
	for _, d := range []string{"lib/", "lib64/", "sbin/", "bin/"} {
		if strings.HasPrefix(p, d) {
			return "usr/" + p
		}
	}
	return p
}

// xtablesLibDir is where iptables looks for its extensions: next to
// libxtables, in xtables/ (Debian: /usr/lib/<triplet>/xtables).
func xtablesLibDir(xtables string) (string, error) {
	libs, err := sharedObjects([]string{xtables})
	if err != nil {
		return "", err
	}
	for _, l := range libs {
		if strings.Contains(filepath.Base(l), "libxtables.so") {
			real, err := filepath.EvalSymlinks(l)
			if err != nil {
				return "", err
			}
			return filepath.Join(filepath.Dir(real), "xtables"), nil
		}
	}
	return "", fmt.Errorf("%s does not link libxtables", xtables)
}

var lddLine = regexp.MustCompile(`(?:=>\s+)?(/\S+)\s+\(0x`)

// sharedObjects lists, without duplicates, the libraries and the loader
// that ldd reports for the given ELF files.
func sharedObjects(elfs []string) ([]string, error) {
	seen := map[string]bool{}
	for _, e := range elfs {
		out, err := exec.Command("ldd", e).Output()
		if err != nil {
			return nil, fmt.Errorf("ldd %s: %w", e, err)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if m := lddLine.FindStringSubmatch(l); m != nil {
				seen[m[1]] = true
			}
		}
	}
	var libs []string
	for l := range seen {
		libs = append(libs, l)
	}
	sort.Strings(libs)
	return libs, nil
}

// corednsImage is /coredns run as nonroot (65532) with the file capability
// cap_net_bind_service=+ep, as upstream's Dockerfile does (setcap in the
// build stage, USER nonroot): the CoreDNS Deployment kubeadm writes drops
// every capability but NET_BIND_SERVICE and runs without privilege
// escalation, and only the file capability lets a non-root process bind :53.
// The runtime must carry the xattr from the layer onto the rootfs.
func corednsImage(bin string) (v1.Image, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("read %s (hack/build-coredns.sh): %w", bin, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(corednsPasswd))},
		{Name: "coredns", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data)), PAXRecords: map[string]string{
			"SCHILY.xattr.security.capability": string(netBindServiceCap),
		}},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
	} {
		h.ModTime = images.Epoch
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		switch h.Name {
		case "etc/passwd":
			_, err = io.WriteString(tw, corednsPasswd)
		case "coredns":
			_, err = tw.Write(data)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerData := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerData)), nil
	})
	if err != nil {
		return nil, err
	}
	return images.Image([]v1.Layer{layer}, v1.Config{Entrypoint: []string{"/coredns"}, User: "65532:65532", ExposedPorts: map[string]struct{}{"53/tcp": {}, "53/udp": {}}})
}

const corednsPasswd = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"

// netBindServiceCap is struct vfs_cap_data, revision 2, effective flag set,
// permitted = 1<<CAP_NET_BIND_SERVICE (10): what `setcap
// cap_net_bind_service=+ep` writes.
var netBindServiceCap = []byte{
	0x01, 0x00, 0x00, 0x02, // magic_etc: VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
	0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // data[0]: permitted, inheritable
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // data[1]
}
