// Package kind builds the pieces of deploy/kind's node image that need no
// Docker, in a directory laid out as the image's root, and checks each:
// the preload archive holds every image kubeadm v1.37.2 asks for, the
// pod-shim config loads, the units pass `systemd-analyze verify` in that
// root, and the containerd/ctr stand-ins answer kind's exact commands.
//
//	go test -count=1 -v ./test/cluster/kind/
//
// The preload archive is built from the cached binaries hack/cluster.sh
// uses (hack/build-kube.sh, build-etcd.sh, build-coredns.sh); without them
// that part skips with the reason. No daemon, no root needed.
package kind

import (
	"archive/tar"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/pod-shim/pod-shim/pkg/config"
)

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "../../.."))
}

func cacheDir() string {
	if c := os.Getenv("POD_SHIM_CACHE"); c != "" {
		return c
	}
	return "/var/cache/pod-shim-ci"
}

// stage lays out what the Dockerfile COPYs, at the paths it copies them to.
func stage(t *testing.T, repo, root string) {
	t.Helper()
	bin := t.TempDir()
	cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(bin, "pod-shim"), "./cmd/pod-shim")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build pod-shim: %v\n%s", err, out)
	}
	copies := map[string]string{
		filepath.Join(bin, "pod-shim"):         "usr/local/bin/pod-shim",
		"deploy/kind/config.toml":              "etc/pod-shim/config.toml",
		"deploy/pod-shim.service":              "etc/systemd/system/pod-shim.service",
		"deploy/kind/pod-shim-preload.service": "etc/systemd/system/pod-shim-preload.service",
		"deploy/crictl.yaml":                   "etc/crictl.yaml",
		"deploy/kind/ctr":                      "usr/local/sbin/ctr",
		"deploy/kind/containerd":               "usr/local/sbin/containerd",
	}
	for src, dst := range copies {
		if !filepath.IsAbs(src) {
			src = filepath.Join(repo, src)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.Contains(dst, "/bin/") || strings.Contains(dst, "/sbin/") {
			mode = 0o755
		}
		p := filepath.Join(root, dst)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNodeFiles(t *testing.T) {
	repo := repoRoot(t)
	root := t.TempDir()
	stage(t, repo, root)

	t.Run("Config", func(t *testing.T) {
		cfg, err := config.Load(filepath.Join(root, "etc/pod-shim/config.toml"), false)
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		if cfg.CgroupDriver != "systemd" || cfg.Listen != "/run/pod-shim/pod-shim.sock" {
			t.Errorf("kind config: cgroup driver %q, listen %q", cfg.CgroupDriver, cfg.Listen)
		}
	})

	t.Run("ContainerdConfigDump", func(t *testing.T) {
		out, err := exec.Command(filepath.Join(root, "usr/local/sbin/containerd"), "config", "dump").Output()
		if err != nil {
			t.Fatal(err)
		}
		// What kind v0.33 reads (pkg/cluster/nodeutils: the CRI plugin's snapshotter, config version 2).
		var c struct {
			Version int `toml:"version"`
			Plugins map[string]struct {
				Containerd struct {
					Snapshotter string `toml:"snapshotter"`
				} `toml:"containerd"`
			} `toml:"plugins"`
		}
		if err := toml.Unmarshal(out, &c); err != nil {
			t.Fatalf("config dump is not TOML: %v\n%s", err, out)
		}
		if c.Version != 2 || c.Plugins["io.containerd.grpc.v1.cri"].Containerd.Snapshotter != "overlayfs" {
			t.Errorf("config dump: %+v", c)
		}
		if err := exec.Command(filepath.Join(root, "usr/local/sbin/containerd"), "--version").Run(); err == nil {
			t.Error("the containerd stand-in answered something other than config dump")
		}
	})

	t.Run("CtrImportStandIn", func(t *testing.T) {
		// A stand-in for pod-shim records what the ctr stand-in execs.
		dir := t.TempDir()
		fake := filepath.Join(dir, "pod-shim")
		script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > " + dir + "/args\ncat > " + dir + "/stdin\n"
		if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		// kind v0.33 pkg/cluster/nodeutils LoadImageArchive, verbatim.
		cmd := exec.Command(filepath.Join(root, "usr/local/sbin/ctr"), "--namespace=k8s.io", "images", "import",
			"--all-platforms", "--digests", "--snapshotter=overlayfs", "-")
		cmd.Env = append(os.Environ(), "POD_SHIM="+fake)
		cmd.Stdin = strings.NewReader("archive bytes")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ctr stand-in: %v\n%s", err, out)
		}
		args, _ := os.ReadFile(filepath.Join(dir, "args"))
		stdin, _ := os.ReadFile(filepath.Join(dir, "stdin"))
		if string(args) != "images\nimport\n-\n" || string(stdin) != "archive bytes" {
			t.Errorf("the stand-in ran pod-shim %q with stdin %q", args, stdin)
		}
		if out, err := exec.Command(filepath.Join(root, "usr/local/sbin/ctr"), "containers", "ls").CombinedOutput(); err == nil {
			t.Errorf("the ctr stand-in accepted containers ls: %s", out)
		}
	})

	t.Run("SystemdAnalyzeVerify", func(t *testing.T) {
		sa, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Skip("systemd-analyze not installed (apt-get install systemd; it need not be PID 1)")
		}
		// The kind node image is Debian with systemd: give the root the
		// host's systemd units (sysinit.target, ...) and the shell tools
		// the units exec, in the merged-/usr layout.
		for _, l := range []struct{ name, target string }{{"bin", "usr/bin"}, {"sbin", "usr/sbin"}, {"lib", "usr/lib"}} {
			os.MkdirAll(filepath.Join(root, l.target), 0o755)
			if err := os.Symlink(l.target, filepath.Join(root, l.name)); err != nil {
				t.Fatal(err)
			}
		}
		if out, err := exec.Command("cp", "-a", "/usr/lib/systemd", filepath.Join(root, "usr/lib/")).CombinedOutput(); err != nil {
			t.Fatalf("copy systemd units: %v\n%s", err, out)
		}
		for _, b := range []string{"/usr/bin/sh", "/usr/bin/rm"} {
			data, err := os.ReadFile(b)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(root, b), data, 0o755)
		}
		out, err := exec.Command(sa, "verify", "--root="+root,
			filepath.Join(root, "etc/systemd/system/pod-shim.service"),
			filepath.Join(root, "etc/systemd/system/pod-shim-preload.service")).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	t.Run("PreloadArchive", func(t *testing.T) {
		if testing.Short() {
			// Two builds of seven images (about a minute); the cluster step runs it.
			t.Skip("builds the preload archive twice; runs without -short")
		}
		kube := filepath.Join(cacheDir(), "kube/v1.37.2")
		need := []string{kube + "/kubeadm", kube + "/kube-apiserver", kube + "/kube-controller-manager", kube + "/kube-scheduler",
			kube + "/kube-proxy", cacheDir() + "/etcd/v3.7.0/etcd", cacheDir() + "/coredns/v1.14.6/coredns"}
		for _, n := range need {
			if _, err := os.Stat(n); err != nil {
				t.Skipf("%s not built (hack/build-kube.sh, hack/build-etcd.sh, hack/build-coredns.sh): %v", n, err)
			}
		}
		pause := filepath.Join(t.TempDir(), "pause")
		if out, err := exec.Command("gcc", "-Os", "-static", "-s", "-o", pause, filepath.Join(repo, "cmd/pod-shim-pause/pause.c")).CombinedOutput(); err != nil {
			t.Skipf("gcc -static for the pause binary: %v\n%s", err, out)
		}
		archive := filepath.Join(root, "kind/pod-shim-preload.tar")
		os.MkdirAll(filepath.Dir(archive), 0o755)
		// The builder prints each image's tag and digest, sorted. The digests
		// are what must not change from build to build; the archive's byte
		// order need not, since go-containerregistry writes a multi-image
		// docker-save archive in map order.
		build := func(out string) string {
			cmd := exec.Command("go", "run", "./test/cluster/images", "--pause", pause, "--out", out)
			cmd.Dir = repo
			cmd.Stderr = os.Stderr
			o, err := cmd.Output()
			if err != nil {
				t.Fatalf("build the preload archive: %v\n%s", err, o)
			}
			return string(o)
		}
		first := build(archive)
		if again := build(filepath.Join(t.TempDir(), "again.tar")); again != first {
			t.Errorf("the preload images are not deterministic:\n%s\nthen\n%s", first, again)
		}
		want, err := exec.Command(kube+"/kubeadm", "config", "images", "list", "--kubernetes-version", "v1.37.2").Output()
		if err != nil {
			t.Fatal(err)
		}
		got := archiveTags(t, archive)
		for _, w := range strings.Fields(string(want)) {
			if !got[w] {
				t.Errorf("kubeadm wants %s; the preload archive has %v", w, got)
			}
		}
	})
}

// archiveTags reads manifest.json of a docker-save archive.
func archiveTags(t *testing.T, p string) map[string]bool {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no manifest.json in %s: %v", p, err)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var m []struct{ RepoTags []string }
		if err := json.NewDecoder(tr).Decode(&m); err != nil {
			t.Fatal(err)
		}
		tags := map[string]bool{}
		var all []string
		for _, e := range m {
			for _, tag := range e.RepoTags {
				tags[tag] = true
				all = append(all, tag)
			}
		}
		sort.Strings(all)
		t.Logf("preload archive: %s", strings.Join(all, " "))
		return tags
	}
}
