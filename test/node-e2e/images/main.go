// Command images builds every image the e2e_node [NodeConformance] specs run,
// offline and deterministically, and serves them from one registry on
// 127.0.0.1 for test/node-e2e/run.sh.
//
//	go run ./test/node-e2e/images --src . --busybox BB --agnhost AGNHOST --kube-src DIR
//
// prints "127.0.0.1:PORT" as the first line of stdout, then one line per
// pushed repository path and tag with its digest, then "ready", and serves
// until SIGTERM/SIGINT.
//
// Repository paths are the upstream ones without the host
// (e2e-test-images/agnhost:2.66.1, pause:3.10.2, ...): the suite reaches them
// through KUBE_TEST_REPO_LIST (promoterE2eRegistry: ADDR/e2e-test-images,
// gcRegistry: ADDR), and names hard-coded in specs through the runtime's
// registry mirrors, both to this one registry.
//
// What is real and what is a stand-in:
//   - agnhost: the real binary from k8s.io/kubernetes/test/images/agnhost
//     (build-agnhost.sh), laid out as upstream's Dockerfile does (/agnhost,
//     /agnhost-2, porter's localhost.crt/key, /uploads, uid 1000 in group
//     50000, ENTRYPOINT /agnhost, CMD pause) on the busybox base instead of
//     alpine.
//   - busybox: the defconfig busybox test/conformance/build-busybox.sh builds.
//   - kitten, nautilus: upstream's html files from the module source on the
//     agnhost image, CMD test-webserver, as upstream.
//   - nonroot: busybox with USER 1234, as upstream.
//   - glibc-dns-testing: the busybox image (its hostname -f resolves
//     through /etc/hosts like upstream's glibc image).
//   - nginx, nonewprivs: test/conformance/standin plays nginx (pid file,
//     master title, HTTP on 80) and nnp (setuid root, prints its euid).
//   - pause: pod-shim's C pause, static.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pod-shim/pod-shim/test/images"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "loopback address to listen on")
	src := flag.String("src", ".", "pod-shim source tree (standin and pause sources)")
	bb := flag.String("busybox", images.BusyboxPath, "static busybox (test/conformance/build-busybox.sh)")
	agnhost := flag.String("agnhost", "", "static agnhost binary (test/node-e2e/build-agnhost.sh)")
	kubeSrc := flag.String("kube-src", "", "k8s.io/kubernetes module source dir (for test/images files)")
	flag.Parse()
	images.BusyboxPath = *bb
	if err := run(*addr, *src, *agnhost, *kubeSrc); err != nil {
		fmt.Fprintln(os.Stderr, "node-e2e images:", err)
		os.Exit(1)
	}
}

func run(addr, src, agnhostPath, kubeSrc string) error {
	if agnhostPath == "" || kubeSrc == "" {
		return fmt.Errorf("--agnhost and --kube-src are required")
	}
	tmp, err := os.MkdirTemp("", "node-e2e-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	standin, pause, err := images.BuildStandinAndPause(src, tmp)
	if err != nil {
		return err
	}
	set, err := build(standin, pause, agnhostPath, filepath.Join(kubeSrc, "test", "images"))
	if err != nil {
		return err
	}
	return images.ServeUntilSignal(addr, set)
}

// entry is an image with the repository path it is served under.
type entry = images.Entry

const (
	passwd = "root:x:0:0:root:/root:/bin/sh\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	group = "root:x:0:\nnogroup:x:65534:\n"
)

func build(standin, pause []byte, agnhostPath, testImages string) ([]entry, error) {
	bb, err := images.Busybox()
	if err != nil {
		return nil, err
	}
	bbLayers, err := bb.Layers()
	if err != nil {
		return nil, err
	}
	const bin = "usr/local/bin/pod-shim-standin"
	extraFiles := []images.File{
		{Name: bin, Mode: 0o755, Data: standin},
		{Name: "etc/passwd", Mode: 0o644, Data: []byte(passwd)},
		{Name: "etc/group", Mode: 0o644, Data: []byte(group)},
		{Name: "var/run", Mode: 0o755, Dir: true},
	}
	// Upstream's busybox image has every applet in /bin, and specs name
	// some by that path (/bin/top, ...): link the ones busybox installs elsewhere.
	list, err := exec.Command(images.BusyboxPath, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", images.BusyboxPath, err)
	}
	inBin := map[string]bool{}
	all := strings.Fields(string(list))
	for _, a := range all {
		if strings.HasPrefix(a, "bin/") {
			inBin[strings.TrimPrefix(a, "bin/")] = true
		}
	}
	for _, a := range all {
		n := filepath.Base(a)
		if !inBin[n] {
			inBin[n] = true
			extraFiles = append(extraFiles, images.File{Name: "bin/" + n, Link: "/bin/busybox"})
		}
	}
	extras, err := images.Layer(extraFiles)
	if err != nil {
		return nil, err
	}
	base := append(append([]v1.Layer{}, bbLayers...), extras)
	img := func(layers []v1.Layer, files []images.File, cfg v1.Config) (v1.Image, error) {
		ls := append([]v1.Layer{}, layers...)
		if len(files) > 0 {
			l, err := images.Layer(files)
			if err != nil {
				return nil, err
			}
			ls = append(ls, l)
		}
		if cfg.Env == nil {
			cfg.Env = []string{images.DefaultPath}
		}
		if cfg.Cmd == nil && cfg.Entrypoint == nil {
			cfg.Cmd = []string{"sh"}
		}
		return images.Image(ls, cfg)
	}
	read := func(p string) ([]byte, error) { return os.ReadFile(filepath.Join(testImages, p)) }

	var out []entry
	// put(tags...)(img(...)) records one image under each tag.
	put := func(repoTags ...string) func(v1.Image, error) error {
		return func(i v1.Image, err error) error {
			if err != nil {
				return err
			}
			for _, rt := range repoTags {
				out = append(out, entry{RepoTag: rt, Image: i})
			}
			return nil
		}
	}
	const e2e = "e2e-test-images/"

	// busybox (framework's BusyBox and the tag memory_qos specs hard-code).
	// It also plays glibc-dns-testing: the "Hostname of Pod" specs run
	// `hostname -f` in it, which needs a libc resolver reading the kubelet's
	// /etc/hosts, and this static glibc busybox has one.
	if err := put(e2e+"busybox:1.37.0-2", e2e+"busybox:1.36.1-1", e2e+"glibc-dns-testing:2.1.1")(img(base, nil, v1.Config{})); err != nil {
		return nil, err
	}

	// agnhost as upstream's Dockerfile lays it out.
	agn, err := os.ReadFile(agnhostPath)
	if err != nil {
		return nil, err
	}
	crt, err := read("agnhost/porter/localhost.crt")
	if err != nil {
		return nil, err
	}
	key, err := read("agnhost/porter/localhost.key")
	if err != nil {
		return nil, err
	}
	agnFiles := []images.File{
		{Name: "agnhost", Mode: 0o755, Data: agn},
		// Upstream's agnhost is alpine with bash; specs run /bin/bash -c.
		// busybox's ash (bash-compatible enough for them) stands in.
		{Name: "bin/bash", Mode: 0o755, Data: []byte("#!/bin/sh\nexec /bin/ash \"$@\"\n")},
		// Lifecycle-hook specs run `curl http://IP:8080/echo?msg=...` in
		// agnhost (alpine's curl upstream): busybox wget fetches the URL.
		{Name: "usr/bin/curl", Mode: 0o755, Data: []byte("#!/bin/sh\nfor a; do u=$a; done\nexec /bin/busybox wget -q -O - \"$u\"\n")},
		{Name: "agnhost-2", Link: "agnhost"},
		{Name: "localhost.crt", Mode: 0o644, Data: crt},
		{Name: "localhost.key", Mode: 0o644, Data: key},
		{Name: "uploads", Mode: 0o755, Dir: true},
		{Name: "etc/passwd", Mode: 0o644, Data: []byte(passwd + "user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n")},
		{Name: "etc/group", Mode: 0o644, Data: []byte(group + "user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n")},
		{Name: "home/user-defined-in-image", Mode: 0o755, Dir: true},
	}
	agnLayer, err := images.Layer(agnFiles)
	if err != nil {
		return nil, err
	}
	agnLayers := append(append([]v1.Layer{}, base...), agnLayer)
	agnCfg := func(version string) v1.Config {
		return v1.Config{
			Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"},
			Env:          []string{images.DefaultPath, "POD_SHIM_AGNHOST_TAG=" + version},
			ExposedPorts: map[string]struct{}{"80/tcp": {}, "8080/tcp": {}, "8081/tcp": {}, "9376/tcp": {}, "5000/tcp": {}},
		}
	}
	// The previous version is a distinct image (image pull specs pull both).
	if err := put(e2e + "agnhost:2.66.1")(img(agnLayers, nil, agnCfg("2.66.1"))); err != nil {
		return nil, err
	}
	if err := put(e2e + "agnhost:2.55")(img(agnLayers, nil, agnCfg("2.55"))); err != nil {
		return nil, err
	}
	// kitten and nautilus: upstream's html files on agnhost.
	for _, n := range []struct{ name, tag string }{{"kitten", "1.8"}, {"nautilus", "1.8"}} {
		jpg, err := read(n.name + "/html/" + n.name + ".jpg")
		if err != nil {
			return nil, err
		}
		data, err := read(n.name + "/html/data.json")
		if err != nil {
			return nil, err
		}
		cfg := agnCfg(n.name)
		cfg.Cmd = []string{"test-webserver"}
		i, err := img(agnLayers, []images.File{
			{Name: n.name + ".jpg", Mode: 0o644, Data: jpg},
			{Name: "data.json", Mode: 0o644, Data: data},
		}, cfg)
		if err := put(e2e+n.name+":"+n.tag)(i, err); err != nil {
			return nil, err
		}
	}

	// nonroot: USER 1234.
	if err := put(e2e + "nonroot:1.5")(img(base, nil, v1.Config{User: "1234"})); err != nil {
		return nil, err
	}
	// nonewprivs: setuid-root nnp, CMD nnp.
	if err := put(e2e + "nonewprivs:1.4")(img(base, []images.File{{Name: "usr/local/bin/nnp", Mode: 0o4755, Data: standin}},
		v1.Config{Cmd: []string{"nnp"}})); err != nil {
		return nil, err
	}
	// nginx: the standin plays nginx on :80.
	nginxFiles := []images.File{
		{Name: "usr/sbin/nginx", Link: "/" + bin},
		{Name: "etc/nginx/conf.d/default.conf", Mode: 0o644, Data: []byte("server {\n    listen       80;\n    server_name  localhost;\n}\n")},
	}
	for _, tag := range []string{"1.27.0-2", "1.28.0-2"} {
		i, err := img(base, nginxFiles, v1.Config{
			Cmd:          []string{"nginx", "-g", "daemon off;"},
			Env:          []string{images.DefaultPath, "NGINX_VERSION=" + strings.Split(tag, "-")[0]},
			ExposedPorts: map[string]struct{}{"80/tcp": {}},
			StopSignal:   "SIGQUIT",
		})
		if err := put(e2e+"nginx:"+tag)(i, err); err != nil {
			return nil, err
		}
	}
	// pause, as GetPauseImageName names it.
	pl, err := images.Layer([]images.File{{Name: "pause", Mode: 0o755, Data: pause}})
	if err != nil {
		return nil, err
	}
	p, err := images.Image([]v1.Layer{pl}, v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"})
	if err := put("pause:3.10.2")(p, err); err != nil {
		return nil, err
	}
	return out, nil
}
