package containers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

// newRunc is a runc with idmapped mounts (>= 1.2): POD_SHIM_RUNC, else
// hack/build-runc.sh's cached build (built from the module proxy once).
func newRunc(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("POD_SHIM_RUNC"); p != "" {
		return p
	}
	cmd := exec.Command("bash", "hack/build-runc.sh")
	cmd.Dir = harness.RepoRoot()
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/build-runc.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// TestUserNamespaces runs a hostUsers: false style pod (user namespace mode
// POD, one mapping to a random unprivileged host range) on runc 1.5 through
// the real daemon, next to Debian's runc 1.1 as the default handler.
func TestUserNamespaces(t *testing.T) {
	requireHost(t)
	runcNew := newRunc(t)
	aux, err := os.MkdirTemp("/tmp", "psu")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(aux) })
	runcRoot := filepath.Join(aux, "runc-root")
	// A runc whose features document lists no rro, to see a container
	// asking for it refused.
	noRRO := filepath.Join(aux, "runc-no-rro")
	script := "#!/bin/sh\nif [ \"$1\" = features ]; then echo '{\"mountOptions\":[\"ro\"]}'; exit 0; fi\nexec /usr/sbin/runc \"$@\"\n"
	if err := os.WriteFile(noRRO, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	noRRORoot := filepath.Join(aux, "no-rro-root")
	config := fmt.Sprintf("[runtimes.runc-new]\npath = %q\nroot = %q\n\n[runtimes.no-rro]\npath = %q\nroot = %q\n", runcNew, runcRoot, noRRO, noRRORoot)
	// The default handler is Debian's runc 1.1, whatever runc PATH finds.
	d := harness.Start(t, harness.Options{
		Tag: "usr", Namespace: "e2e", Labels: map[string]string{"e2e": "pod-shim"},
		Config: config, Crictl: true, ExtraArgs: []string{"--runtime", "/usr/sbin/runc"},
	})
	// The pod's root (an unprivileged host uid) must reach its rootfs, as
	// under the daemon's default state dir (0711); MkdirTemp made it 0700.
	if err := os.Chmod(d.Base, 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanRuncRoot(runcRoot); cleanRuncRoot(noRRORoot) })
	_, ref := registry(t)
	d.Crictl("pull", ref)
	rs, _ := d.Client()

	// A random 64k-aligned range far above any real user, as the kubelet picks.
	hostBase := uint32(65536 * (2000 + rand.IntN(20000)))
	mapping := []*cri.IDMapping{{ContainerId: 0, HostId: hostBase, Length: 65536}}
	podCfg := func(name string, u *cri.UserNamespace) *cri.PodSandboxConfig {
		return &cri.PodSandboxConfig{
			Metadata:     &cri.PodSandboxMetadata{Name: name, Namespace: "userns", Uid: harness.RandHex(16)},
			Hostname:     name,
			LogDirectory: filepath.Join(d.LogDir, name),
			Linux: &cri.LinuxPodSandboxConfig{SecurityContext: &cri.LinuxSandboxSecurityContext{
				NamespaceOptions: &cri.NamespaceOption{UsernsOptions: u},
			}},
		}
	}
	pod := &cri.UserNamespace{Mode: cri.NamespaceMode_POD, Uids: mapping, Gids: mapping}

	t.Run("Status", func(t *testing.T) {
		r, err := rs.Status(ctx(t), &cri.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, h := range r.RuntimeHandlers {
			got[h.Name] = h.GetFeatures().GetUserNamespaces()
		}
		if !got["runc-new"] || got[""] || got["runc"] {
			t.Errorf("user_namespaces per handler = %v, want only runc-new (Debian's runc 1.1 has no idmapped mounts)", got)
		}
	})

	t.Run("Refused", func(t *testing.T) {
		for _, tc := range []struct {
			name, handler, want string
			u                   *cri.UserNamespace
		}{
			{"old-runc", "", "does not support user namespaces", pod},
			{"container", "runc-new", "CONTAINER is not supported", &cri.UserNamespace{Mode: cri.NamespaceMode_CONTAINER}},
			{"target", "runc-new", "TARGET is not supported", &cri.UserNamespace{Mode: cri.NamespaceMode_TARGET}},
			{"two-mappings", "runc-new", "exactly one uid mapping", &cri.UserNamespace{Mode: cri.NamespaceMode_POD,
				Uids: append(mapping, &cri.IDMapping{ContainerId: 65536, HostId: hostBase + 65536, Length: 1}), Gids: mapping}},
			{"root-unmapped", "runc-new", "must map container id 0", &cri.UserNamespace{Mode: cri.NamespaceMode_POD,
				Uids: []*cri.IDMapping{{ContainerId: 1, HostId: hostBase, Length: 65536}}, Gids: mapping}},
		} {
			_, err := rs.RunPodSandbox(ctx(t), &cri.RunPodSandboxRequest{Config: podCfg("refused-"+tc.name, tc.u), RuntimeHandler: tc.handler})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want InvalidArgument with %q", tc.name, err, tc.want)
			}
		}
		if _, err := rs.RunPodSandbox(ctx(t), &cri.RunPodSandboxRequest{Config: podCfg("refused-old-runc", pod)}); err == nil ||
			!strings.Contains(err.Error(), `"default"`) {
			t.Errorf("the refusal must name the handler: %v", err)
		}
	})

	t.Run("RecursiveReadOnlyRefused", func(t *testing.T) {
		pc := &cri.PodSandboxConfig{
			Metadata:     &cri.PodSandboxMetadata{Name: "no-rro", Namespace: "userns", Uid: harness.RandHex(16)},
			LogDirectory: filepath.Join(d.LogDir, "no-rro"),
		}
		r, err := rs.RunPodSandbox(ctx(t), &cri.RunPodSandboxRequest{Config: pc, RuntimeHandler: "no-rro"})
		if err != nil {
			t.Fatal(err)
		}
		d.RecordPod(r.PodSandboxId)
		cc := &cri.ContainerConfig{
			Metadata: &cri.ContainerMetadata{Name: "rro"}, Image: &cri.ImageSpec{Image: ref}, Command: []string{"true"},
			Mounts: []*cri.Mount{{ContainerPath: "/rro", HostPath: aux, Readonly: true, RecursiveReadOnly: true}},
		}
		_, err = rs.CreateContainer(ctx(t), &cri.CreateContainerRequest{PodSandboxId: r.PodSandboxId, Config: cc, SandboxConfig: pc})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"no-rro"`) || !strings.Contains(err.Error(), "recursive read-only") {
			t.Errorf("rro on a handler without it: %v", err)
		}
		if err := d.StopPod(r.PodSandboxId); err != nil {
			t.Error(err)
		}
		if err := d.RemovePod(r.PodSandboxId); err != nil {
			t.Error(err)
		}
	})

	// Host dirs for the volumes: one idmapped (the kubelet's emptyDir), one
	// host-owned bind without mappings, read-only.
	vol := filepath.Join(aux, "vol")
	hostRO := filepath.Join(aux, "host-ro")
	for _, dir := range []string{vol, hostRO} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(hostRO, "secret"), []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pc := podCfg("userns", pod)
	r, err := rs.RunPodSandbox(ctx(t), &cri.RunPodSandboxRequest{Config: pc, RuntimeHandler: "runc-new"})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	podID := r.PodSandboxId
	d.RecordPod(podID)

	script = `cat /proc/self/uid_map; echo uid=$(id -u) gid=$(id -g)
echo written > /vol/by-root && echo vol-ok
stat -c 'rootfs=%u:%g' /bin/busybox
stat -c 'hosts=%u:%g' /etc/hosts
touch /dev/shm/x && echo shm-ok
mkdir /made && touch /made/f && stat -c 'made=%u:%g' /made/f / /bin
touch /host-ro/x 2>/dev/null || echo ro-refused
mount -o remount,rw /host-ro 2>/dev/null || echo remount-refused
echo ready
exec sleep 3600`
	cc := &cri.ContainerConfig{
		Metadata: &cri.ContainerMetadata{Name: "main"},
		Image:    &cri.ImageSpec{Image: ref},
		Command:  []string{"sh", "-c", script},
		LogPath:  "main.log",
		Mounts: []*cri.Mount{
			{ContainerPath: "/vol", HostPath: vol, UidMappings: mapping, GidMappings: mapping},
			{ContainerPath: "/host-ro", HostPath: hostRO, Readonly: true},
		},
		Linux: &cri.LinuxContainerConfig{SecurityContext: &cri.LinuxContainerSecurityContext{
			NamespaceOptions: &cri.NamespaceOption{UsernsOptions: pod},
		}},
	}
	cr, err := rs.CreateContainer(ctx(t), &cri.CreateContainerRequest{PodSandboxId: podID, Config: cc, SandboxConfig: pc})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	cid := cr.ContainerId
	if _, err := rs.StartContainer(ctx(t), &cri.StartContainerRequest{ContainerId: cid}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	logFile := filepath.Join(d.LogDir, "userns", "main.log")
	harness.Eventually(t, "the container's checks", 30*time.Second, func() error {
		data, _ := os.ReadFile(logFile)
		if !strings.Contains(string(data), "ready") {
			return fmt.Errorf("log so far: %q", data)
		}
		return nil
	})
	logData, _ := os.ReadFile(logFile)
	log := string(logData)
	t.Logf("container output:\n%s", log)
	for _, want := range []string{
		fmt.Sprintf("0 %d 65536", hostBase), "uid=0 gid=0", "vol-ok", "rootfs=0:0", "hosts=0:0", "shm-ok",
		"ro-refused", "remount-refused",
	} {
		if !strings.Contains(strings.Join(strings.Fields(log), " "), want) {
			t.Errorf("container output lacks %q:\n%s", want, log)
		}
	}

	if n := strings.Count(log, "made=0:0"); n != 3 {
		t.Errorf("a file and dir made in the rootfs, and /, /bin: %d of 3 owned by the container's root", n)
	}

	t.Run("HostView", func(t *testing.T) {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(vol, "by-root"), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 0 || st.Gid != 0 {
			t.Errorf("file written by the container's root into the idmapped volume is %d:%d on the host, want 0:0", st.Uid, st.Gid)
		}
		if _, err := os.Stat(filepath.Join(hostRO, "x")); err == nil {
			t.Error("the container's root wrote into a host-owned read-only bind")
		}
		pid := containerPid(t, rs, cid)
		uid, err := hostUID(pid)
		if err != nil {
			t.Fatal(err)
		}
		if uid != hostBase {
			t.Errorf("container process runs as host uid %d, want %d", uid, hostBase)
		}
		pause := podPausePid(t, rs, podID)
		if puid, err := hostUID(pause); err != nil || puid < hostBase || puid >= hostBase+65536 {
			t.Errorf("pause runs as host uid %d (%v), want one in [%d, %d)", puid, err, hostBase, hostBase+65536)
		}
		same := func(kind string) {
			a, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, kind))
			b, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pause, kind))
			if err1 != nil || err2 != nil || a != b {
				t.Errorf("%s namespace: container %s, pause %s (%v %v)", kind, a, b, err1, err2)
			}
		}
		same("user")
		same("net")
	})

	t.Run("Exec", func(t *testing.T) {
		r, err := rs.ExecSync(ctx(t), &cri.ExecSyncRequest{ContainerId: cid, Cmd: []string{"sh", "-c", "id -u; cat /proc/self/uid_map; cat /vol/by-root"}, Timeout: 20})
		if err != nil {
			t.Fatal(err)
		}
		out := strings.Join(strings.Fields(string(r.Stdout)), " ")
		if r.ExitCode != 0 || !strings.HasPrefix(out, fmt.Sprintf("0 0 %d 65536 written", hostBase)) {
			t.Errorf("exec: exit %d, %q %q", r.ExitCode, r.Stdout, r.Stderr)
		}
	})

	t.Run("Streaming", func(t *testing.T) {
		// Port-forward into the pod's netns (owned by its user namespace),
		// streaming exec and attach, through the daemon's stream server.
		web := &cri.ContainerConfig{
			Metadata: &cri.ContainerMetadata{Name: "web"}, Image: &cri.ImageSpec{Image: ref}, LogPath: "web.log",
			Command: []string{"sh", "-c", "mkdir -p /www && echo pf-ok > /www/index.html && exec httpd -f -p 8080 -h /www"},
		}
		attach := &cri.ContainerConfig{
			Metadata: &cri.ContainerMetadata{Name: "attach"}, Image: &cri.ImageSpec{Image: ref}, LogPath: "attach.log",
			Command: []string{"sh", "-c", "read l; echo got-$l"}, Stdin: true, StdinOnce: true,
		}
		ids := map[string]string{}
		for _, cfg := range []*cri.ContainerConfig{web, attach} {
			r, err := rs.CreateContainer(ctx(t), &cri.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pc})
			if err != nil {
				t.Fatalf("CreateContainer %s: %v", cfg.Metadata.Name, err)
			}
			if _, err := rs.StartContainer(ctx(t), &cri.StartContainerRequest{ContainerId: r.ContainerId}); err != nil {
				t.Fatalf("StartContainer %s: %v", cfg.Metadata.Name, err)
			}
			ids[cfg.Metadata.Name] = r.ContainerId
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		local := l.Addr().(*net.TCPAddr).Port
		l.Close()
		pctx, cancel := context.WithCancel(context.Background())
		pf := exec.CommandContext(pctx, harness.CrictlPath(), "--config", d.CrictlYAML, "port-forward", podID, fmt.Sprintf("%d:8080", local))
		if err := pf.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); pf.Wait() })
		client := &http.Client{Timeout: 5 * time.Second}
		harness.Eventually(t, "GET through port-forward", 30*time.Second, func() error {
			resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", local))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), "pf-ok") {
				return fmt.Errorf("%s %q", resp.Status, body)
			}
			return nil
		})
		if out := d.Crictl("exec", ids["web"], "sh", "-c", "id -u; cat /proc/self/uid_map"); !strings.Contains(strings.Join(strings.Fields(out), " "), fmt.Sprintf("0 0 %d 65536", hostBase)) {
			t.Errorf("crictl exec: %q", out)
		}
		at := exec.Command(harness.CrictlPath(), "--config", d.CrictlYAML, "attach", "-i", ids["attach"])
		at.Stdin = strings.NewReader("hello\n")
		out, err := at.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "got-hello") {
			t.Errorf("crictl attach: %v %q", err, out)
		}
	})

	t.Run("Stats", func(t *testing.T) {
		harness.Eventually(t, "container stats", 20*time.Second, func() error {
			r, err := rs.ContainerStats(ctx(t), &cri.ContainerStatsRequest{ContainerId: cid})
			if err != nil {
				return err
			}
			if r.GetStats().GetMemory().GetWorkingSetBytes().GetValue() == 0 {
				return fmt.Errorf("no memory usage yet: %v", r.GetStats())
			}
			return nil
		})
	})

	t.Run("DaemonRestart", func(t *testing.T) {
		d.Restart(syscall.SIGKILL)
		if st := d.ContainerStatus(cid); st.State != cri.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("after a daemon crash the container is %v", st.State)
		}
		r, err := rs.ExecSync(ctx(t), &cri.ExecSyncRequest{ContainerId: cid, Cmd: []string{"id", "-u"}, Timeout: 20})
		if err != nil || strings.TrimSpace(string(r.Stdout)) != "0" {
			t.Errorf("exec after restart: %v %q", err, r.GetStdout())
		}
	})

	t.Run("Remove", func(t *testing.T) {
		if err := d.StopPod(podID); err != nil {
			t.Fatal(err)
		}
		if err := d.RemovePod(podID); err != nil {
			t.Fatal(err)
		}
	})
}

func containerPid(t *testing.T, rs cri.RuntimeServiceClient, id string) int {
	t.Helper()
	r, err := rs.ContainerStatus(ctx(t), &cri.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct{ Pid int }
	if err := json.Unmarshal([]byte(r.Info["info"]), &info); err != nil || info.Pid <= 0 {
		t.Fatalf("container pid from %q: %v", r.Info, err)
	}
	return info.Pid
}

func podPausePid(t *testing.T, rs cri.RuntimeServiceClient, id string) int {
	t.Helper()
	r, err := rs.PodSandboxStatus(ctx(t), &cri.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct{ Pid int }
	if err := json.Unmarshal([]byte(r.Info["info"]), &info); err != nil || info.Pid <= 0 {
		t.Fatalf("pause pid from %q: %v", r.Info, err)
	}
	return info.Pid
}

// hostUID is the real uid of pid as the host sees it.
func hostUID(pid int) (uint32, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "Uid:"); ok {
			var u uint32
			_, err := fmt.Sscan(v, &u)
			return u, err
		}
	}
	return 0, fmt.Errorf("no Uid line in /proc/%d/status", pid)
}
