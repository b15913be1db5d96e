package containers

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestContainerFields runs one container per ContainerConfig field on real
// runc and checks the field took effect: each check fails if the field were
// ignored.
func TestContainerFields(t *testing.T) {
	e := newEnv(t)

	t.Run("OOMKilled10of10", func(t *testing.T) {
		for i := range 10 {
			cfg := e.config("head -c 200m /dev/zero | tail")
			cfg.Linux.Resources.MemoryLimitInBytes = 32 << 20
			cfg.Linux.Resources.MemorySwapLimitInBytes = 32 << 20
			st, _ := e.run(t, cfg)
			if st.Reason != "OOMKilled" || st.ExitCode != 137 {
				t.Fatalf("run %d: reason %q exit %d, want OOMKilled 137", i, st.Reason, st.ExitCode)
			}
		}
	})

	t.Run("DropAllCapEffZero", func(t *testing.T) {
		cfg := e.config("grep Cap /proc/self/status")
		cfg.Linux.SecurityContext.Capabilities = &cri.Capability{DropCapabilities: []string{"ALL"}}
		_, out := e.run(t, cfg)
		if got := capEff(t, out); got != 0 {
			t.Fatalf("CapEff = %x with drop ALL", got)
		}
	})

	t.Run("DefaultCapsAreContainerds", func(t *testing.T) {
		cfg := e.config("grep Cap /proc/self/status")
		_, out := e.run(t, cfg)
		want := capMask([]string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
			"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"})
		if got := capEff(t, out); got != want {
			t.Fatalf("CapEff = %x, want containerd's default set %x", got, want)
		}
	})

	t.Run("AddCapability", func(t *testing.T) {
		cfg := e.config("grep Cap /proc/self/status")
		cfg.Linux.SecurityContext.Capabilities = &cri.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_ADMIN"}}
		_, out := e.run(t, cfg)
		if got := capEff(t, out); got != 1<<12 {
			t.Fatalf("CapEff = %x, want only CAP_NET_ADMIN", got)
		}
	})

	t.Run("PrivilegedSeesHostDevices", func(t *testing.T) {
		dev := hostOnlyDevice(t)
		cfg := e.config("test -e " + dev + " && echo present; grep CapEff /proc/self/status; touch /sys/kernel/x 2>&1; echo done")
		cfg.Linux.SecurityContext.Privileged = true
		_, out := e.run(t, cfg)
		if !strings.Contains(out, "present") {
			t.Fatalf("privileged container does not see host device %s: %q", dev, out)
		}
		plain := e.config("test -e " + dev + " && echo present; echo done")
		if _, out := e.run(t, plain); strings.Contains(out, "present") {
			t.Fatalf("unprivileged container sees host device %s", dev)
		}
	})

	t.Run("Device", func(t *testing.T) {
		cfg := e.config("test -c /dev/mynull && echo x > /dev/mynull && echo ok")
		cfg.Devices = []*cri.Device{{ContainerPath: "/dev/mynull", HostPath: "/dev/null", Permissions: "rwm"}}
		if _, out := e.run(t, cfg); !strings.Contains(out, "ok") {
			t.Fatalf("device not usable: %q", out)
		}
	})

	t.Run("SeccompRuntimeDefaultBlocksUnshare", func(t *testing.T) {
		script := "unshare -U true && echo allowed || echo blocked"
		def := e.config(script)
		def.Linux.SecurityContext.Seccomp = &cri.SecurityProfile{ProfileType: cri.SecurityProfile_RuntimeDefault}
		_, out := e.run(t, def)
		if !strings.Contains(out, "blocked") {
			t.Fatalf("RuntimeDefault allowed unshare -U: %q", out)
		}
		unc := e.config(script)
		unc.Linux.SecurityContext.Seccomp = &cri.SecurityProfile{ProfileType: cri.SecurityProfile_Unconfined}
		if _, out := e.run(t, unc); !strings.Contains(out, "allowed") {
			t.Fatalf("Unconfined blocked unshare -U: %q", out)
		}
	})

	t.Run("SeccompLocalhost", func(t *testing.T) {
		prof := filepath.Join(t.TempDir(), "deny-mkdir.json")
		os.WriteFile(prof, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644)
		cfg := e.config("mkdir /tmp/d && echo made || echo denied")
		cfg.Linux.SecurityContext.Seccomp = &cri.SecurityProfile{ProfileType: cri.SecurityProfile_Localhost, LocalhostRef: prof}
		if _, out := e.run(t, cfg); !strings.Contains(out, "denied") {
			t.Fatalf("localhost profile not applied: %q", out)
		}
	})

	t.Run("RunAsUserGroupSupplemental", func(t *testing.T) {
		cfg := e.config("id")
		sc := cfg.Linux.SecurityContext
		sc.RunAsUser = &cri.Int64Value{Value: 1000}
		sc.RunAsGroup = &cri.Int64Value{Value: 3000}
		sc.SupplementalGroups = []int64{4000, 5000}
		st, out := e.run(t, cfg)
		if got := strings.TrimSpace(out); got != "uid=1000 gid=3000 groups=3000,4000,5000" {
			t.Fatalf("id = %q", got)
		}
		u := st.GetUser().GetLinux()
		if u.GetUid() != 1000 || u.GetGid() != 3000 || fmt.Sprint(u.GetSupplementalGroups()) != "[3000 4000 5000]" {
			t.Fatalf("status user = %+v", u)
		}
	})

	t.Run("RunAsUsernameFromImage", func(t *testing.T) {
		cfg := e.config("id -u; id -g")
		cfg.Linux.SecurityContext.RunAsUsername = "nobody"
		if _, out := e.run(t, cfg); strings.Fields(out)[0] != "65534" || strings.Fields(out)[1] != "65534" {
			t.Fatalf("id = %q, want nobody's 65534", out)
		}
		bad := e.config("true")
		bad.Linux.SecurityContext.RunAsUsername = "nosuchuser"
		if _, err := e.create(bad, false); err == nil || !strings.Contains(err.Error(), "nosuchuser") {
			t.Fatalf("unknown username: %v", err)
		}
	})

	t.Run("ReadonlyRootfs", func(t *testing.T) {
		vol := t.TempDir()
		cfg := e.config("touch /x 2>/dev/null && echo rootfs-writable; touch /vol/x && echo vol-ok")
		cfg.Linux.SecurityContext.ReadonlyRootfs = true
		cfg.Mounts = []*cri.Mount{{ContainerPath: "/vol", HostPath: vol}}
		_, out := e.run(t, cfg)
		if strings.Contains(out, "rootfs-writable") || !strings.Contains(out, "vol-ok") {
			t.Fatalf("readonly rootfs: %q", out)
		}
	})

	t.Run("ReadonlyMount", func(t *testing.T) {
		cfg := e.config("touch /vol/x 2>/dev/null && echo writable || echo ro")
		cfg.Mounts = []*cri.Mount{{ContainerPath: "/vol", HostPath: t.TempDir(), Readonly: true}}
		if _, out := e.run(t, cfg); !strings.Contains(out, "ro") || strings.Contains(out, "writable") {
			t.Fatalf("readonly mount: %q", out)
		}
	})

	t.Run("MaskedPaths", func(t *testing.T) {
		cfg := e.config("cat /proc/timer_list | wc -c; ls /sys/firmware | wc -l")
		if _, out := e.run(t, cfg); strings.Join(strings.Fields(out), " ") != "0 0" {
			t.Fatalf("default masked paths readable: %q", out)
		}
		priv := e.config("cat /proc/timer_list | wc -c")
		priv.Linux.SecurityContext.Privileged = true
		if _, out := e.run(t, priv); strings.TrimSpace(out) == "0" {
			t.Fatalf("privileged container has masked /proc/timer_list: %q", out)
		}
		custom := e.config("cat /var/www/index.html | wc -c")
		custom.Linux.SecurityContext.MaskedPaths = []string{"/var/www/index.html"}
		if _, out := e.run(t, custom); strings.TrimSpace(out) != "0" {
			t.Fatalf("masked_paths ignored: %q", out)
		}
	})

	t.Run("ReadonlyPaths", func(t *testing.T) {
		cfg := e.config("echo x > /tmp/f; echo y > /tmp/f 2>/dev/null && echo writable || echo ro")
		cfg.Linux.SecurityContext.ReadonlyPaths = []string{"/tmp"}
		if _, out := e.run(t, cfg); !strings.Contains(out, "ro") {
			t.Fatalf("readonly_paths ignored: %q", out)
		}
	})

	t.Run("NoNewPrivs", func(t *testing.T) {
		cfg := e.config("grep NoNewPrivs /proc/self/status")
		cfg.Linux.SecurityContext.NoNewPrivs = true
		if _, out := e.run(t, cfg); !strings.Contains(out, "1") {
			t.Fatalf("no_new_privs ignored: %q", out)
		}
	})

	t.Run("WorkingDirCreated", func(t *testing.T) {
		cfg := e.config("pwd")
		cfg.WorkingDir = "/does/not/exist"
		if _, out := e.run(t, cfg); strings.TrimSpace(out) != "/does/not/exist" {
			t.Fatalf("pwd = %q", out)
		}
	})

	t.Run("StopSignalReported", func(t *testing.T) {
		cfg := e.config("trap 'echo got-usr1; exit 0' USR1; while true; do sleep 0.1; done")
		cfg.StopSignal = cri.Signal_SIGNAL_SIGUSR1
		id, err := e.create(cfg, true)
		if err != nil {
			t.Fatal(err)
		}
		if st := e.status(t, id); st.StopSignal != cri.Signal_SIGNAL_SIGUSR1 {
			t.Fatalf("status stop signal = %v", st.StopSignal)
		}
		if _, err := e.rs.StopContainer(ctx(t), &cri.StopContainerRequest{ContainerId: id, Timeout: 30}); err != nil {
			t.Fatal(err)
		}
		if out := e.logText(t, cfg); !strings.Contains(out, "got-usr1") {
			t.Fatalf("stop did not send SIGUSR1: %q", out)
		}
		def := e.config("true")
		id2, err := e.create(def, false)
		if err != nil {
			t.Fatal(err)
		}
		if st := e.status(t, id2); st.StopSignal != cri.Signal_SIGNAL_SIGTERM {
			t.Fatalf("default stop signal = %v, want SIGTERM", st.StopSignal)
		}
	})

	t.Run("StartErrorMissingCommand", func(t *testing.T) {
		cfg := e.config("")
		cfg.Command = []string{"/no/such/binary"}
		id, err := e.create(cfg, true)
		if err == nil {
			t.Fatal("start of a missing binary succeeded")
		}
		st := e.status(t, id)
		if st.State != cri.ContainerState_CONTAINER_EXITED || st.ExitCode != 128 || st.Reason != "StartError" ||
			!strings.Contains(st.Message, "/no/such/binary") {
			t.Fatalf("status = %v %d %q %q", st.State, st.ExitCode, st.Reason, st.Message)
		}
		t.Logf("StartError message: %s", st.Message)
	})

	t.Run("ResourcesInCgroupAndUpdatedLive", func(t *testing.T) {
		cfg := e.config("sleep 300")
		cfg.Linux.Resources.CpuPeriod = 100000
		cfg.Linux.Resources.CpuQuota = 50000
		cfg.Linux.Resources.CpuShares = 512
		cfg.Linux.Resources.MemoryLimitInBytes = 64 << 20
		id, err := e.create(cfg, true)
		if err != nil {
			t.Fatal(err)
		}
		pid := e.pid(t, id)
		check := func(quota, shares, mem string) {
			t.Helper()
			if got := cgroupFile(t, pid, "cpu", "cpu.cfs_quota_us"); got != quota {
				t.Errorf("cpu.cfs_quota_us = %s, want %s", got, quota)
			}
			if got := cgroupFile(t, pid, "cpu", "cpu.shares"); got != shares {
				t.Errorf("cpu.shares = %s, want %s", got, shares)
			}
			if got := cgroupFile(t, pid, "memory", "memory.limit_in_bytes"); got != mem {
				t.Errorf("memory.limit_in_bytes = %s, want %s", got, mem)
			}
		}
		check("50000", "512", strconv.Itoa(64<<20))
		_, err = e.rs.UpdateContainerResources(ctx(t), &cri.UpdateContainerResourcesRequest{ContainerId: id, Linux: &cri.LinuxContainerResources{
			CpuPeriod: 100000, CpuQuota: 150000, CpuShares: 1024, MemoryLimitInBytes: 128 << 20,
		}})
		if err != nil {
			t.Fatal(err)
		}
		check("150000", "1024", strconv.Itoa(128<<20))
		r := e.status(t, id).GetResources().GetLinux()
		if r.GetCpuQuota() != 150000 || r.GetMemoryLimitInBytes() != 128<<20 || r.GetCpuShares() != 1024 {
			t.Fatalf("status resources = %+v", r)
		}
		e.rs.StopContainer(ctx(t), &cri.StopContainerRequest{ContainerId: id})
	})

	t.Run("TargetPIDNamespace", func(t *testing.T) {
		target := e.config("sleep 300")
		tid, err := e.create(target, true)
		if err != nil {
			t.Fatal(err)
		}
		cfg := e.config("ps -o comm | grep -c sleep")
		cfg.Linux.SecurityContext.NamespaceOptions = &cri.NamespaceOption{Pid: cri.NamespaceMode_TARGET, TargetId: tid}
		if _, out := e.run(t, cfg); strings.TrimSpace(out) == "0" {
			t.Fatalf("TARGET pid namespace does not see the target's sleep: %q", out)
		}
		e.rs.StopContainer(ctx(t), &cri.StopContainerRequest{ContainerId: tid})
	})

	t.Run("ReopenStoppedContainerErrs", func(t *testing.T) {
		cfg := e.config("true")
		id, err := e.create(cfg, true)
		if err != nil {
			t.Fatal(err)
		}
		e.waitExit(t, id)
		os.Remove(e.logPath(cfg))
		if _, err := e.rs.ReopenContainerLog(ctx(t), &cri.ReopenContainerLogRequest{ContainerId: id}); err == nil {
			t.Fatal("reopen of a stopped container succeeded")
		}
		if _, err := os.Stat(e.logPath(cfg)); !os.IsNotExist(err) {
			t.Fatalf("reopen of a stopped container made the log file: %v", err)
		}
	})
}

// hostOnlyDevice is a host device node a default container lacks.
func hostOnlyDevice(t *testing.T) string {
	for _, name := range []string{"/dev/kmsg", "/dev/loop0", "/dev/loop-control", "/dev/mem", "/dev/vda", "/dev/sda", "/dev/nvme0"} {
		if _, err := os.Stat(name); err == nil {
			return name
		}
	}
	t.Skip("no host device to look for")
	return ""
}
