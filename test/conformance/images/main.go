// Command images builds offline stand-ins for every image critest v1.37
// pulls and serves them from one registry on 127.0.0.1, so pod-shim's
// registry mirrors can point registry.k8s.io, k8s.gcr.io, gcr.io and
// public.ecr.aws at it and critest keeps using the original names.
//
//	go run ./test/conformance/images [--addr 127.0.0.1:0]
//
// prints "127.0.0.1:PORT" as the first line of stdout, then one line per
// pushed repository path and tag, then "ready", and serves until SIGTERM/SIGINT.
//
// What each image must hold comes from cri-tools v1.37.0 pkg/validate and
// pkg/framework: see build() below. The base is test/images' busybox layer
// made from --busybox (../build-busybox.sh builds one from Debian's source
// package: Debian's busybox-static lacks ipcs and pgrep and its sh runs
// applets in-process), plus the standin binary (../standin) for the nginx,
// httpd and nonewprivs programs, and for ipcs and pgrep when the busybox
// lacks them; pause images carry the C pause built with gcc -static.
// Everything is stamped with images.Epoch, so digests repeat across builds.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/pod-shim/pod-shim/test/images"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "loopback address to listen on")
	src := flag.String("src", ".", "pod-shim source tree (for the standin and pause sources)")
	bbPath := flag.String("busybox", images.BusyboxPath, "static busybox for the base image (test/conformance/build-busybox.sh builds one with every applet critest runs)")
	flag.Parse()
	images.BusyboxPath = *bbPath
	if err := run(*addr, *src); err != nil {
		fmt.Fprintln(os.Stderr, "conformance images:", err)
		os.Exit(1)
	}
}

func run(addr, src string) error {
	tmp, err := os.MkdirTemp("", "conformance-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	standin, pause, err := images.BuildStandinAndPause(src, tmp)
	if err != nil {
		return err
	}
	set, err := build(standin, pause)
	if err != nil {
		return err
	}
	return images.ServeUntilSignal(addr, set)
}

// entry is an image with the repository path it is served under.
type entry = images.Entry

const (
	passwd = "root:x:0:0:root:/root:/bin/sh\n" +
		"www-data:x:33:33:www-data:/var/www:/bin/false\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	group = "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n"
)

// build makes every image. Repository paths are the upstream ones without the
// host: a mirror is asked for the same path (registry.k8s.io/pause and
// k8s.gcr.io/pause are thus one image, which the "same image from different
// registries" spec wants).
func build(standin, pause []byte) ([]entry, error) {
	bb, err := images.Busybox()
	if err != nil {
		return nil, err
	}
	busybox, err := os.ReadFile(images.BusyboxPath)
	if err != nil {
		return nil, err
	}
	const bin = "usr/local/bin/pod-shim-standin"
	extraFiles := []images.File{
		{Name: bin, Mode: 0o755, Data: standin},
		// Upstream busybox images link applets with hard links, so masking
		// /bin/ls (the MaskedPaths spec) hides ls alone. test/images links
		// them with symlinks, and a bind mount over a symlink masks its
		// target, /bin/busybox, and with it sh: give ls its own copy.
		{Name: "bin/ls", Mode: 0o755, Data: busybox},
		{Name: "etc/passwd", Mode: 0o644, Data: []byte(passwd)},
		{Name: "etc/group", Mode: 0o644, Data: []byte(group)},
		{Name: "var/run", Mode: 0o755, Dir: true},
	}
	// Debian's busybox-static lacks ipcs and pgrep: the standin plays them.
	list, err := exec.Command(images.BusyboxPath, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", images.BusyboxPath, err)
	}
	have := map[string]bool{}
	for _, a := range strings.Fields(string(list)) {
		have[a] = true
	}
	for _, a := range []string{"ipcs", "pgrep"} {
		if !have[a] {
			extraFiles = append(extraFiles, images.File{Name: "usr/bin/" + a, Link: "/" + bin})
		}
	}
	extras, err := images.Layer(extraFiles)
	if err != nil {
		return nil, err
	}
	bbLayers, err := bb.Layers()
	if err != nil {
		return nil, err
	}
	base := append(append([]v1.Layer{}, bbLayers...), extras)
	env := []string{images.DefaultPath}

	// img stacks more files on the busybox base with a config.
	img := func(files []images.File, cfg v1.Config) (v1.Image, error) {
		ls := append([]v1.Layer{}, base...)
		if len(files) > 0 {
			l, err := images.Layer(files)
			if err != nil {
				return nil, err
			}
			ls = append(ls, l)
		}
		if cfg.Env == nil {
			cfg.Env = env
		}
		if cfg.Cmd == nil && cfg.Entrypoint == nil {
			cfg.Cmd = []string{"sh"}
		}
		return images.Image(ls, cfg)
	}
	nginxFiles := func(port int) []images.File {
		return []images.File{
			{Name: "usr/sbin/nginx", Link: "/" + bin},
			{Name: "etc/nginx/conf.d/default.conf", Mode: 0o644, Data: fmt.Appendf(nil, "server {\n    listen       %d;\n    server_name  localhost;\n}\n", port)},
		}
	}
	nginxCfg := func(port int) v1.Config {
		return v1.Config{
			Cmd:          []string{"nginx", "-g", "daemon off;"},
			ExposedPorts: map[string]struct{}{fmt.Sprintf("%d/tcp", port): {}},
			StopSignal:   "SIGQUIT",
		}
	}

	var out []entry
	add := func(i v1.Image, err error, repoTags ...string) error {
		if err != nil {
			return err
		}
		for _, rt := range repoTags {
			out = append(out, entry{RepoTag: rt, Image: i})
		}
		return nil
	}
	const e2e = "e2e-test-images/"
	const staging = "k8s-staging-cri-tools/"
	steps := []func() error{
		// framework.DefaultLinuxContainerImage: shell, sleep, top, ipcs, pgrep, id, hostname, ...
		func() error { i, err := img(nil, v1.Config{}); return add(i, err, e2e+"busybox:1.29-2") },
		// networking/streaming/security-context specs: nginx on 80, pidfile, master title.
		func() error { i, err := img(nginxFiles(80), nginxCfg(80)); return add(i, err, e2e+"nginx:1.14-2") },
		// hostnet variant listens on 12003 (cri-tools images/hostnet-nginx).
		func() error {
			i, err := img(nginxFiles(12003), nginxCfg(12003))
			return add(i, err, staging+"hostnet-nginx-"+runtime.GOARCH+":latest")
		},
		// multi-container spec: serves on 80 and logs a line naming httpd.
		func() error {
			i, err := img([]images.File{{Name: "usr/local/apache2/bin/httpd", Link: "/" + bin}},
				v1.Config{Cmd: []string{"/usr/local/apache2/bin/httpd"}, ExposedPorts: map[string]struct{}{"80/tcp": {}}})
			return add(i, err, e2e+"httpd:2.4.39-4")
		},
		// NoNewPrivs specs: setuid-root program printing its effective uid.
		func() error {
			i, err := img([]images.File{{Name: "usr/local/bin/nnp", Mode: 0o4755, Data: standin}},
				v1.Config{Entrypoint: []string{"/usr/local/bin/nnp"}, User: "nobody"})
			return add(i, err, e2e+"nonewprivs:1.3")
		},
	}
	// cri-tools images/image-user: USER per image.
	for repo, user := range map[string]string{
		"test-image-user-uid":            "1002",
		"test-image-user-username":       "www-data",
		"test-image-user-uid-group":      "1003:1004",
		"test-image-user-username-group": "www-data:1004",
	} {
		steps = append(steps, func() error { i, err := img(nil, v1.Config{User: user}); return add(i, err, staging+repo+":latest") })
	}
	// cri-tools images/image-predefined-group: uid 1000 in group 50000.
	steps = append(steps, func() error {
		i, err := img([]images.File{
			{Name: "etc/passwd", Mode: 0o644, Data: []byte(passwd + "default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n")},
			{Name: "etc/group", Mode: 0o644, Data: []byte(group + "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n")},
			{Name: "home/default-user", Mode: 0o755, Dir: true},
		}, v1.Config{User: "1000"})
		return add(i, err, staging+"test-image-predefined-group:latest")
	})
	// cri-tools images/image-test: busybox plus a file named after the image, so
	// each name is a distinct image; test-image-tags:{1,2,3} is one image.
	// test-image-digest is served by tag only: the spec pins an upstream digest
	// no offline build can reproduce.
	for _, t := range []struct{ file, repoTags string }{
		{"test-image-1", "test-image-1:latest"},
		{"test-image-2", "test-image-2:latest"},
		{"test-image-3", "test-image-3:latest"},
		{"test-image-latest", "test-image-latest:latest"},
		{"test-image-digest", "test-image-digest:latest"},
		{"test-image-tag-test", "test-image-tag:test"},
		{"test-image-tag-all", "test-image-tag:all"},
	} {
		steps = append(steps, func() error {
			i, err := img([]images.File{{Name: t.file, Mode: 0o644, Data: []byte(t.file + "\n")}}, v1.Config{})
			return add(i, err, staging+t.repoTags)
		})
	}
	steps = append(steps, func() error {
		i, err := img([]images.File{{Name: "test-image-tags", Mode: 0o644, Data: []byte("test-image-tags\n")}}, v1.Config{})
		return add(i, err, staging+"test-image-tags:1", staging+"test-image-tags:2", staging+"test-image-tags:3")
	})
	// registry.k8s.io/pause and k8s.gcr.io/pause: the C pause, as upstream.
	steps = append(steps, func() error {
		l, err := images.Layer([]images.File{{Name: "pause", Mode: 0o755, Data: pause}})
		if err != nil {
			return err
		}
		p, err := images.Image([]v1.Layer{l}, v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"})
		if err != nil {
			return err
		}
		// 3.9 and 3.10 differ upstream; keep them distinct images here too.
		p310, err := mutate.Config(p, v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535", Env: []string{"PAUSE_VERSION=3.10"}})
		if err != nil {
			return err
		}
		if err := add(p, nil, "pause:3.9"); err != nil {
			return err
		}
		return add(p310, nil, "pause:3.10")
	})
	// public.ecr.aws/docker/library/busybox tags used by `critest -benchmark`.
	steps = append(steps, func() error {
		i, err := img(nil, v1.Config{})
		return add(i, err, "docker/library/busybox:1.35.0-glibc", "docker/library/busybox:1-uclibc",
			"docker/library/busybox:1", "docker/library/busybox:1-glibc", "docker/library/busybox:1-musl")
	})
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
