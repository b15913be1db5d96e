package containers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/status"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
	"github.com/pod-shim/pod-shim/test/images"
)

// TestHostFeatures runs, on real runc, what had only unit tests: tty
// containers through the monitor's console socket, RuntimeClass handler
// binaries, CDI devices, image volumes, mount propagation, recursive
// read-only mounts, supplemental groups policies, pod resources updated live
// and hugepages. One daemon serves them all; its config names a CDI spec dir
// and a second handler, a wrapper around runc that logs its invocations.
func TestHostFeatures(t *testing.T) {
	requireHost(t)
	aux, err := os.MkdirTemp("/tmp", "psh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(aux) })
	cdiDir := filepath.Join(aux, "cdi")
	if err := os.MkdirAll(cdiDir, 0o755); err != nil {
		t.Fatal(err)
	}
	wrapperLog := filepath.Join(aux, "wrapper.log")
	wrapper := filepath.Join(aux, "runc-wrapper")
	script := "#!/bin/sh\necho \"$*\" >> " + wrapperLog + "\nexec " + harness.MustLookPath(t, "runc") + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	wrappedRoot := filepath.Join(aux, "wrapped-root")
	config := fmt.Sprintf("cdi_spec_dirs = [%q]\n\n[runtimes.wrapped]\npath = %q\nroot = %q\n", cdiDir, wrapper, wrappedRoot)
	e := newEnvWith(t, config, "")
	t.Cleanup(func() { cleanRuncRoot(wrappedRoot) })

	t.Run("TTY", func(t *testing.T) {
		cfg := e.config("tty; test -t 0 && echo stdin-is-tty; test -t 1 && echo stdout-is-tty; echo hi")
		cfg.Tty, cfg.Stdin, cfg.StdinOnce = true, true, true
		st, _ := e.run(t, cfg)
		if st.ExitCode != 0 {
			t.Fatalf("exit %d: %s", st.ExitCode, st.Message)
		}
		recs := parseLog(t, mustRead(t, e.logPath(cfg)))
		var got []string
		for _, r := range recs {
			if r.stream != "stdout" {
				t.Errorf("tty output must be logged as stdout, got a %q record %q", r.stream, r.text)
			}
			got = append(got, r.text)
		}
		want := []string{"/dev/pts/0", "stdin-is-tty", "stdout-is-tty", "hi"}
		if !slices.Equal(got, want) {
			t.Fatalf("tty container logged %q, want %q", got, want)
		}
	})

	t.Run("TTYNoStdin", func(t *testing.T) {
		// tty without stdin: the kubelet sends this for `tty: true` alone.
		cfg := e.config("test -t 1 && echo tty-out")
		cfg.Tty = true
		if st, out := e.run(t, cfg); st.ExitCode != 0 || strings.TrimSpace(out) != "tty-out" {
			t.Fatalf("exit %d, log %q", st.ExitCode, out)
		}
	})

	t.Run("RuntimeHandlerWrapper", func(t *testing.T) {
		rs := e.rs
		_, err := rs.RunPodSandbox(ctx(t), &cri.RunPodSandboxRequest{Config: e.podCfg, RuntimeHandler: "no-such-handler"})
		if code := grpcCode(err); code != "InvalidArgument" {
			t.Fatalf("unknown handler: %v, want InvalidArgument", err)
		}
		// The default pod's containers never went through the wrapper.
		before := string(readIfExists(wrapperLog))
		if strings.Contains(before, e.pod) {
			t.Fatalf("default pod %s ran through the wrapped handler:\n%s", e.pod, before)
		}
		podCfg := &cri.PodSandboxConfig{
			Metadata:     &cri.PodSandboxMetadata{Name: "wrapped", Namespace: "containers", Uid: harness.RandHex(16)},
			Hostname:     "wrapped",
			LogDirectory: filepath.Join(e.d.LogDir, "wrapped"),
			Linux:        &cri.LinuxPodSandboxConfig{},
		}
		resp, err := rs.RunPodSandbox(ctx(t), &cri.RunPodSandboxRequest{Config: podCfg, RuntimeHandler: "wrapped"})
		if err != nil {
			t.Fatal(err)
		}
		pod := resp.PodSandboxId
		e.d.RecordPod(pod)
		t.Cleanup(func() { removePod(e, pod) })
		cfg := e.config("echo through-the-wrapper")
		cr, err := rs.CreateContainer(ctx(t), &cri.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
		if err != nil {
			t.Fatal(err)
		}
		id := cr.ContainerId
		if _, err := rs.StartContainer(ctx(t), &cri.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
		st := e.waitExit(t, id)
		if st.ExitCode != 0 {
			t.Fatalf("container in the wrapped pod: exit %d %s", st.ExitCode, st.Message)
		}
		data, _ := os.ReadFile(filepath.Join(podCfg.LogDirectory, cfg.LogPath))
		if !strings.Contains(string(data), "through-the-wrapper") {
			t.Fatalf("log %q", data)
		}
		log := string(readIfExists(wrapperLog))
		// pause and app container both: `run --detach` creates and starts in one spawn.
		for _, want := range []string{"--root " + wrappedRoot, "run --bundle", "--detach " + pod, "--detach " + id} {
			if !strings.Contains(log, want) {
				t.Errorf("wrapper log lacks %q:\n%s", want, log)
			}
		}
		// runc's state of the pod is under the handler's root, not the default one.
		if _, err := os.Stat(filepath.Join(wrappedRoot, pod)); err != nil {
			t.Errorf("pause state not under the handler's root: %v", err)
		}
		if _, err := os.Stat(filepath.Join(e.d.RuncRoot(), pod)); err == nil {
			t.Errorf("pause state of the wrapped pod is under the default root")
		}
		removePod(e, pod)
		log = string(readIfExists(wrapperLog))
		if !strings.Contains(log, "delete --force "+pod) && !strings.Contains(log, "delete "+pod) && !strings.Contains(log, "kill "+pod) {
			t.Errorf("stop/remove of the wrapped pod did not go through the wrapper:\n%s", log)
		}
		if ents, _ := os.ReadDir(wrappedRoot); len(ents) != 0 {
			t.Errorf("handler root keeps %d entries after the pod's removal", len(ents))
		}
	})

	t.Run("CDIDevice", func(t *testing.T) {
		// A device node of our own (1:3, /dev/null's numbers), in a temp dir.
		node := filepath.Join(aux, "cdi-null")
		if err := unix.Mknod(node, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		spec := fmt.Sprintf(`cdiVersion: "0.6.0"
kind: "pod-shim.test/device"
devices:
- name: dev0
  containerEdits:
    deviceNodes:
    - path: /dev/pstest0
      hostPath: %s
    env:
    - PSTEST_CDI=dev0
`, node)
		if err := os.WriteFile(filepath.Join(cdiDir, "pstest.yaml"), []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := e.config(`test -c /dev/pstest0 && echo node-ok; echo x > /dev/pstest0 && echo write-ok; echo "env=$PSTEST_CDI"`)
		cfg.CDIDevices = []*cri.CDIDevice{{Name: "pod-shim.test/device=dev0"}}
		st, out := e.run(t, cfg)
		for _, want := range []string{"node-ok", "write-ok", "env=dev0"} {
			if !strings.Contains(out, want) {
				t.Errorf("CDI device: %q missing from %q (exit %d)", want, out, st.ExitCode)
			}
		}
		bad := e.config("true")
		bad.CDIDevices = []*cri.CDIDevice{{Name: "pod-shim.test/device=nosuch"}}
		if _, err := e.create(bad, false); err == nil || !strings.Contains(err.Error(), "nosuch") {
			t.Errorf("unknown CDI device: %v", err)
		}
	})

	t.Run("ImageVolume", func(t *testing.T) {
		reg, _ := registry(t)
		layer, err := images.Layer([]images.File{{Name: "data/hello.txt", Mode: 0o644, Data: []byte("from the volume image\n")}})
		if err != nil {
			t.Fatal(err)
		}
		img, err := images.Image([]v1.Layer{layer}, v1.Config{})
		if err != nil {
			t.Fatal(err)
		}
		ref, _, err := reg.Push("ivol:"+harness.RandHex(4), img)
		if err != nil {
			t.Fatal(err)
		}
		e.d.Crictl("pull", ref)
		cfg := e.config("cat /iv/data/hello.txt; touch /iv/new 2>/dev/null && echo write-succeeded || echo write-refused; grep ' /iv ' /proc/self/mountinfo")
		cfg.Mounts = []*cri.Mount{{ContainerPath: "/iv", Image: &cri.ImageSpec{Image: ref}, Readonly: true}}
		_, out := e.run(t, cfg)
		if !strings.Contains(out, "from the volume image") {
			t.Errorf("image volume file not visible: %q", out)
		}
		if !strings.Contains(out, "write-refused") {
			t.Errorf("image volume is writable: %q", out)
		}
	})

	t.Run("PropagationRslave", func(t *testing.T) {
		src := sharedMountDir(t, aux, "slave")
		cfg := e.config(`i=0; while [ ! -e /mnt/p/sub/marker ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
test -e /mnt/p/sub/marker && echo host-mount-seen; grep ' /mnt/p ' /proc/self/mountinfo`)
		cfg.Mounts = []*cri.Mount{{ContainerPath: "/mnt/p", HostPath: src, Propagation: cri.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}}
		id, err := e.create(cfg, true)
		if err != nil {
			t.Fatal(err)
		}
		// Made on the host after the container started: only propagation
		// can bring it in.
		sub := filepath.Join(src, "sub")
		os.Mkdir(sub, 0o755)
		if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })
		if err := os.WriteFile(filepath.Join(sub, "marker"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		st := e.waitExit(t, id)
		out := e.logText(t, cfg)
		if st.ExitCode != 0 || !strings.Contains(out, "host-mount-seen") {
			t.Fatalf("a host mount under an rslave source did not appear inside: exit %d, %q", st.ExitCode, out)
		}
		if !strings.Contains(out, " master:") {
			t.Errorf("rslave mount has no master: optional field: %q", out)
		}
		if strings.Contains(out, " shared:") {
			t.Errorf("rslave mount is shared: %q", out)
		}
	})

	t.Run("PropagationRshared", func(t *testing.T) {
		src := sharedMountDir(t, aux, "shared")
		in := filepath.Join(src, "in")
		t.Cleanup(func() { unix.Unmount(in, unix.MNT_DETACH) })
		cfg := e.config("mkdir -p /mnt/p/in && mount -t tmpfs tmpfs /mnt/p/in && echo mounted; grep ' /mnt/p ' /proc/self/mountinfo")
		cfg.Linux.SecurityContext.Privileged = true // Bidirectional needs it, as in Kubernetes
		cfg.Mounts = []*cri.Mount{{ContainerPath: "/mnt/p", HostPath: src, Propagation: cri.MountPropagation_PROPAGATION_BIDIRECTIONAL}}
		st, out := e.run(t, cfg)
		if st.ExitCode != 0 || !strings.Contains(out, "mounted") {
			t.Fatalf("exit %d %q", st.ExitCode, out)
		}
		t.Logf("inside: %s", out)
		if !strings.Contains(out, " shared:") {
			t.Errorf("rshared mount has no shared: optional field: %q", out)
		}
		if !isMountPoint(in) {
			t.Errorf("a mount made inside an rshared mount did not reach the host at %s", in)
		}
	})

	t.Run("PropagationNeedsAPropagatingSource", func(t *testing.T) {
		// This host's / is private (no systemd): a source there cannot
		// propagate, and create says so, as containerd does.
		src := filepath.Join(aux, "private")
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		if shared, slave := hostPropagation(t, src); shared || slave {
			t.Skipf("%s is on a shared or slave mount on this host", src)
		}
		for _, p := range []cri.MountPropagation{cri.MountPropagation_PROPAGATION_HOST_TO_CONTAINER, cri.MountPropagation_PROPAGATION_BIDIRECTIONAL} {
			cfg := e.config("true")
			cfg.Linux.SecurityContext.Privileged = true
			cfg.Mounts = []*cri.Mount{{ContainerPath: "/mnt/p", HostPath: src, Propagation: p}}
			_, err := e.create(cfg, false)
			if code := grpcCode(err); code != "InvalidArgument" || !strings.Contains(err.Error(), src) {
				t.Errorf("%v from a private source: %v, want InvalidArgument naming the path", p, err)
			}
		}
	})

	t.Run("RecursiveReadOnly", func(t *testing.T) {
		if out, _ := exec.Command("runc", "features").Output(); !strings.Contains(string(out), `"rro"`) {
			t.Skip("runc features lists no rro mount option: this runc cannot make recursive read-only mounts")
		}
		src := filepath.Join(aux, "rro")
		sub := filepath.Join(src, "sub")
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })
		script := "touch /r/top 2>/dev/null && echo top-writable || echo top-ro; touch /r/sub/x 2>/dev/null && echo sub-writable || echo sub-ro"
		ro := e.config(script)
		ro.Mounts = []*cri.Mount{{ContainerPath: "/r", HostPath: src, Readonly: true}}
		if _, out := e.run(t, ro); !strings.Contains(out, "top-ro") || !strings.Contains(out, "sub-writable") {
			// Plain readonly is not recursive: the check below is meaningful.
			t.Fatalf("plain readonly: %q, want top-ro and sub-writable", out)
		}
		rro := e.config(script)
		rro.Mounts = []*cri.Mount{{ContainerPath: "/r", HostPath: src, Readonly: true, RecursiveReadOnly: true}}
		if _, out := e.run(t, rro); !strings.Contains(out, "top-ro") || !strings.Contains(out, "sub-ro") {
			t.Fatalf("recursive readonly: %q, want top-ro and sub-ro", out)
		}
	})

	t.Run("SupplementalGroupsMergeStrict", func(t *testing.T) {
		reg, _ := registry(t)
		base, err := images.Busybox()
		if err != nil {
			t.Fatal(err)
		}
		layers, err := base.Layers()
		if err != nil {
			t.Fatal(err)
		}
		accounts, err := images.Layer([]images.File{
			{Name: "etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/:/bin/sh\n")},
			{Name: "etc/group", Mode: 0o644, Data: []byte("root:x:0:\napp:x:1000:\nextra:x:2000:app\nother:x:2001:root\n")},
		})
		if err != nil {
			t.Fatal(err)
		}
		img, err := images.Image(append(layers, accounts), v1.Config{Env: []string{images.DefaultPath}})
		if err != nil {
			t.Fatal(err)
		}
		ref, _, err := reg.Push("groups:"+harness.RandHex(4), img)
		if err != nil {
			t.Fatal(err)
		}
		e.d.Crictl("pull", ref)
		for _, tc := range []struct {
			policy cri.SupplementalGroupsPolicy
			want   string
		}{
			{cri.SupplementalGroupsPolicy_Merge, "1000 2000 4000"},
			{cri.SupplementalGroupsPolicy_Strict, "1000 4000"},
		} {
			cfg := e.config("id -G")
			cfg.Image = &cri.ImageSpec{Image: ref}
			sc := cfg.Linux.SecurityContext
			sc.RunAsUser = &cri.Int64Value{Value: 1000}
			sc.SupplementalGroups = []int64{4000}
			sc.SupplementalGroupsPolicy = tc.policy
			st, out := e.run(t, cfg)
			if got := sortedFields(out); got != tc.want {
				t.Errorf("%v: id -G = %q, want %q", tc.policy, got, tc.want)
			}
			var status []string
			for _, g := range st.GetUser().GetLinux().GetSupplementalGroups() {
				status = append(status, strconv.FormatInt(g, 10))
			}
			if got := sortedFields(strings.Join(status, " ")); got != tc.want {
				t.Errorf("%v: ContainerStatus.user groups = %q, want %q", tc.policy, got, tc.want)
			}
		}
	})

	t.Run("UpdatePodSandboxResources", func(t *testing.T) {
		parent := "/pspod" + harness.RandHex(4)
		for _, c := range []string{"cpu", "memory"} {
			dir := filepath.Join("/sys/fs/cgroup", c, parent)
			t.Cleanup(func() { os.Remove(dir) })
		}
		podCfg := &cri.PodSandboxConfig{
			Metadata:     &cri.PodSandboxMetadata{Name: "resized", Namespace: "containers", Uid: harness.RandHex(16)},
			Hostname:     "resized",
			LogDirectory: filepath.Join(e.d.LogDir, "resized"),
			Linux:        &cri.LinuxPodSandboxConfig{CgroupParent: parent},
		}
		resp, err := e.rs.RunPodSandbox(ctx(t), &cri.RunPodSandboxRequest{Config: podCfg})
		if err != nil {
			t.Fatal(err)
		}
		pod := resp.PodSandboxId
		e.d.RecordPod(pod)
		t.Cleanup(func() { removePod(e, pod) })
		read := func(c, file string) string {
			return strings.TrimSpace(string(readIfExists(filepath.Join("/sys/fs/cgroup", c, parent, file))))
		}
		for _, step := range []struct{ quota, mem int64 }{{50000, 256 << 20}, {120000, 300 << 20}} {
			_, err := e.rs.UpdatePodSandboxResources(ctx(t), &cri.UpdatePodSandboxResourcesRequest{
				PodSandboxId: pod,
				Resources:    &cri.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: step.quota, MemoryLimitInBytes: step.mem},
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := read("cpu", "cpu.cfs_quota_us"); got != strconv.FormatInt(step.quota, 10) {
				t.Errorf("cpu.cfs_quota_us = %q, want %d", got, step.quota)
			}
			if got := read("memory", "memory.limit_in_bytes"); got != strconv.FormatInt(step.mem, 10) {
				t.Errorf("memory.limit_in_bytes = %q, want %d", got, step.mem)
			}
		}
	})

	t.Run("Hugepages", func(t *testing.T) {
		// On a v1 or hybrid host runc puts hugetlb on its v1 hierarchy
		// only; a hugetlb listed by the hybrid's empty v2 is of no use.
		_, v1Err := os.Stat("/sys/fs/cgroup/hugetlb")
		_, v2Err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
		v2, _ := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		if v1Err != nil && (v2Err != nil || !strings.Contains(string(v2), "hugetlb")) {
			t.Skip("the host has no hugetlb cgroup controller (no /sys/fs/cgroup/hugetlb hierarchy, no unified-only v2 with hugetlb): hugepage limits cannot be applied here; the v1 and v2 translation has unit tests in pkg/container")
		}
		cfg := e.config("cat /sys/fs/cgroup/hugetlb/hugetlb.2MB.limit_in_bytes")
		cfg.Linux.Resources.HugepageLimits = []*cri.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}}
		if _, out := e.run(t, cfg); strings.TrimSpace(out) != strconv.Itoa(4<<20) {
			t.Fatalf("hugetlb.2MB.limit_in_bytes = %q", out)
		}
	})
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func readIfExists(path string) []byte {
	data, _ := os.ReadFile(path)
	return data
}

func sortedFields(s string) string {
	f := strings.Fields(s)
	slices.SortFunc(f, func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return x - y
	})
	return strings.Join(f, " ")
}

// grpcCode is the gRPC status code name of err, "" for nil.
func grpcCode(err error) string {
	if err == nil {
		return ""
	}
	if s, ok := status.FromError(err); ok {
		return s.Code().String()
	}
	return err.Error()
}

// sharedMountDir makes dir a bind mount of itself, rshared, as a kubelet's
// pod volume dir on a systemd host is: the source mount must propagate for
// rslave or rshared to mean anything. Unmounted (with what is under it) in
// Cleanup.
func sharedMountDir(t testing.TB, aux, name string) string {
	t.Helper()
	dir := filepath.Join(aux, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("umount", "-R", "-l", dir).Run()
	})
	if err := unix.Mount("", dir, "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		t.Fatal(err)
	}
	return dir
}

func isMountPoint(path string) bool {
	for _, m := range harness.MountInfo() {
		if m.Mountpoint == path {
			return true
		}
	}
	return false
}

// removePod stops and removes a pod, bounded; errors are the test's
// leftover checks' business.
func removePod(e *env, pod string) {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e.rs.StopPodSandbox(c, &cri.StopPodSandboxRequest{PodSandboxId: pod})
	e.rs.RemovePodSandbox(c, &cri.RemovePodSandboxRequest{PodSandboxId: pod})
}

// cleanRuncRoot force-deletes whatever a test's extra runtime root still
// holds (a failed test), then removes the root.
func cleanRuncRoot(root string) {
	if ents, err := os.ReadDir(root); err == nil {
		for _, ent := range ents {
			exec.Command("runc", "--root", root, "delete", "--force", ent.Name()).Run()
		}
	}
	os.RemoveAll(root)
}

// hostPropagation reads the optional fields of the mount holding path (the
// deepest mount point above it; of mounts stacked there, the last).
func hostPropagation(t testing.TB, path string) (shared, slave bool) {
	t.Helper()
	best := -1
	for _, m := range harness.MountInfo() {
		point := m.Mountpoint
		if point != path && point != "/" && !strings.HasPrefix(path, point+"/") || len(point) < best {
			continue
		}
		best = len(point)
		shared, slave = false, false
		for _, opt := range strings.Fields(m.Optional) {
			shared = shared || strings.HasPrefix(opt, "shared:")
			slave = slave || strings.HasPrefix(opt, "master:")
		}
	}
	return shared, slave
}
