package container

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/pod-shim/pod-shim/pkg/image"
	"github.com/pod-shim/pod-shim/pkg/oci"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

func i64(v int64) *int64 { return &v }

func img(entrypoint, cmd []string, env ...string) *image.Image {
	return &image.Image{ID: "sha256:abc", Config: ocispec.ImageConfig{Entrypoint: entrypoint, Cmd: cmd, Env: env}}
}

func TestCommandLine(t *testing.T) {
	ep := []string{"/entry", "-x"}
	cmd := []string{"serve", "--port=80"}
	tests := []struct {
		name          string
		command, args []string
		image         *image.Image
		want          []string
	}{
		{"neither: entrypoint + cmd", nil, nil, img(ep, cmd), []string{"/entry", "-x", "serve", "--port=80"}},
		{"command replaces entrypoint and drops cmd", []string{"/bin/sh"}, nil, img(ep, cmd), []string{"/bin/sh"}},
		{"command and args", []string{"/bin/sh"}, []string{"-c", "true"}, img(ep, cmd), []string{"/bin/sh", "-c", "true"}},
		{"args replace cmd", nil, []string{"run"}, img(ep, cmd), []string{"/entry", "-x", "run"}},
		{"args with no entrypoint", nil, []string{"/bin/echo", "hi"}, img(nil, cmd), []string{"/bin/echo", "hi"}},
		{"only cmd", nil, nil, img(nil, cmd), []string{"serve", "--port=80"}},
		{"only entrypoint", nil, nil, img(ep, nil), []string{"/entry", "-x"}},
		{"nothing at all", nil, nil, img(nil, nil), []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{Command: tt.command, Args: tt.args}
			got := commandLine(c, tt.image)
			if len(got) != len(tt.want) || (len(got) > 0 && !reflect.DeepEqual(got, tt.want)) {
				t.Fatalf("commandLine = %q, want %q", got, tt.want)
			}
		})
	}
	// The result must not alias the image's or the config's slices.
	im := img(make([]string, 1, 10), []string{"c"})
	im.Config.Entrypoint[0] = "/e"
	c := &Config{Args: []string{"a"}}
	got := commandLine(c, im)
	got[0] = "changed"
	if im.Config.Entrypoint[0] != "/e" {
		t.Fatal("commandLine aliases the image entrypoint")
	}
}

func TestEnvironment(t *testing.T) {
	defPath := strings.TrimPrefix(oci.DefaultPath, "PATH=")
	tests := []struct {
		name     string
		image    []string
		envs     []KeyValue
		hostname string
		want     []string
	}{
		{
			name:     "image env overridden by key, stable order",
			image:    []string{"PATH=/img/bin", "A=1", "B=2"},
			envs:     []KeyValue{{"B", "20"}, {"C", "3"}, {"A", "10"}},
			hostname: "pod-a",
			want:     []string{"PATH=/img/bin", "A=10", "B=20", "HOSTNAME=pod-a", "C=3"},
		},
		{
			name:     "PATH default added when the image has none",
			image:    []string{"X=y"},
			hostname: "h",
			want:     []string{"X=y", "PATH=" + defPath, "HOSTNAME=h"},
		},
		{
			name:  "no hostname",
			image: nil,
			envs:  []KeyValue{{"K", "v=w"}},
			want:  []string{"PATH=" + defPath, "K=v=w"},
		},
		{
			name:     "container env overrides PATH and HOSTNAME",
			envs:     []KeyValue{{"PATH", "/mine"}, {"HOSTNAME", "custom"}},
			hostname: "h",
			want:     []string{"PATH=/mine", "HOSTNAME=custom"},
		},
		{
			name:     "image HOSTNAME replaced by the pod's",
			image:    []string{"HOSTNAME=built", "PATH=/p"},
			hostname: "pod",
			want:     []string{"HOSTNAME=pod", "PATH=/p"},
		},
		{
			name:  "value with = and empty value",
			image: []string{"PATH=/p", "Q=a=b", "E="},
			envs:  []KeyValue{{"EMPTY", ""}},
			want:  []string{"PATH=/p", "Q=a=b", "E=", "EMPTY="},
		},
		{
			name:  "duplicate container keys: last wins, first position",
			image: []string{"PATH=/p"},
			envs:  []KeyValue{{"D", "1"}, {"D", "2"}},
			want:  []string{"PATH=/p", "D=2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := environment(&Config{Envs: tt.envs}, img(nil, nil, tt.image...), tt.hostname)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("environment = %q, want %q", got, tt.want)
			}
			// Same input, same output: order must not depend on map iteration.
			for range 20 {
				if again := environment(&Config{Envs: tt.envs}, img(nil, nil, tt.image...), tt.hostname); !reflect.DeepEqual(again, got) {
					t.Fatalf("unstable order: %q vs %q", again, got)
				}
			}
		})
	}
}

const (
	testPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n" +
		"alice:x:1000:1000:Alice:/home/alice:/bin/sh\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
	testGroup = "root:x:0:\n" +
		"www-data:x:33:\n" +
		"web:x:500:www-data,alice\n" +
		"logs:x:600:www-data\n" +
		"alice:x:1000:\n" +
		"devs:x:700:alice\n" +
		"grp:x:800:\n"
)

func rootfsWith(t *testing.T, passwd, group string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if passwd != "" {
		if err := os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte(passwd), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if group != "" {
		if err := os.WriteFile(filepath.Join(root, "etc", "group"), []byte(group), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestResolveUser(t *testing.T) {
	root := rootfsWith(t, testPasswd, testGroup)
	tests := []struct {
		name      string
		rootfs    string
		sec       Security
		imageUser string
		want      specs.User
		wantErr   error // errors.Is target; errAny for any error
	}{
		{name: "default root", want: specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0}}},
		{name: "run_as_user + run_as_group + supplemental groups",
			sec:  Security{RunAsUser: i64(1000), RunAsGroup: i64(3000), SupplementalGroups: []int64{4000, 3000, 4001, 4000}},
			want: specs.User{UID: 1000, GID: 3000, AdditionalGids: []uint32{3000, 500, 700, 4000, 4001}}},
		{name: "run_as_user only takes the passwd gid and /etc/group groups",
			sec:  Security{RunAsUser: i64(1000)},
			want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 500, 700}}},
		{name: "run_as_user not in passwd",
			sec:  Security{RunAsUser: i64(4242)},
			want: specs.User{UID: 4242, GID: 0, AdditionalGids: []uint32{0}}},
		{name: "run_as_username resolves uid/gid and groups",
			sec:  Security{RunAsUsername: "www-data"},
			want: specs.User{UID: 33, GID: 33, AdditionalGids: []uint32{33, 500, 600}}},
		{name: "run_as_username + supplemental",
			sec:  Security{RunAsUsername: "www-data", SupplementalGroups: []int64{9000, 500}},
			want: specs.User{UID: 33, GID: 33, AdditionalGids: []uint32{33, 500, 600, 9000}}},
		{name: "run_as_user wins over run_as_username",
			sec:  Security{RunAsUser: i64(1000), RunAsUsername: "www-data"},
			want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 500, 700}}},
		{name: "unknown username", sec: Security{RunAsUsername: "nosuchuser"}, wantErr: ErrInvalid},
		{name: "image USER uid:gid", imageUser: "1003:1004", want: specs.User{UID: 1003, GID: 1004, AdditionalGids: []uint32{1004}}},
		{name: "image USER name", imageUser: "www-data", want: specs.User{UID: 33, GID: 33, AdditionalGids: []uint32{33, 500, 600}}},
		{name: "image USER name:group", imageUser: "www-data:grp", want: specs.User{UID: 33, GID: 800, AdditionalGids: []uint32{800, 500, 600}}},
		{name: "run_as_group over image USER name", imageUser: "alice", sec: Security{RunAsGroup: i64(42)},
			want: specs.User{UID: 1000, GID: 42, AdditionalGids: []uint32{42, 500, 700}}},
		{name: "run_as_group alone", sec: Security{RunAsGroup: i64(42)}, want: specs.User{UID: 0, GID: 42, AdditionalGids: []uint32{42}}},
		{name: "run_as_user overrides image USER", imageUser: "www-data", sec: Security{RunAsUser: i64(0)},
			want: specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0}}},
		{name: "image USER uid:gid without passwd", rootfs: t.TempDir(), imageUser: "1003:1004", want: specs.User{UID: 1003, GID: 1004, AdditionalGids: []uint32{1004}}},
		{name: "supplemental groups without passwd", rootfs: t.TempDir(), sec: Security{RunAsUser: i64(7), SupplementalGroups: []int64{0, 8}},
			want: specs.User{UID: 7, GID: 0, AdditionalGids: []uint32{0, 8}}},
		{name: "image USER unknown name", imageUser: "ghost", wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rootfs := tt.rootfs
			if rootfs == "" {
				rootfs = root
			}
			got, err := resolveUser(rootfs, tt.sec, tt.imageUser)
			if tt.wantErr != nil {
				if err == nil || (tt.wantErr != errAny && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("resolveUser = %+v, %v; want error %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("resolveUser: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("resolveUser = %+v, want %+v", got, tt.want)
			}
		})
	}
}

var errAny = errors.New("any error")

// Kubernetes' default SupplementalGroupsPolicy (Merge), and containerd with
// it, adds the /etc/group memberships of the container's primary user even
// when run_as_group is set.
func TestResolveUserRunAsGroupKeepsEtcGroupMemberships(t *testing.T) {
	root := rootfsWith(t, testPasswd, testGroup)
	got, err := resolveUser(root, Security{RunAsUser: i64(1000), RunAsGroup: i64(3000), SupplementalGroups: []int64{4000}}, "")
	if err != nil {
		t.Fatal(err)
	}
	want := specs.User{UID: 1000, GID: 3000, AdditionalGids: []uint32{3000, 500, 700, 4000}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("resolveUser = %+v, want %+v", got, want)
	}
}

// A rootfs's /etc/passwd that is an absolute symlink must resolve inside the
// rootfs, never to the host's file.
func TestResolveUserSymlinkStaysInRootfs(t *testing.T) {
	hostDir := t.TempDir()
	hostPasswd := filepath.Join(hostDir, "passwd")
	hostGroup := filepath.Join(hostDir, "group")
	if err := os.WriteFile(hostPasswd, []byte("evil:x:4242:4243::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hostGroup, []byte("evilgrp:x:4244:evil\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("symlink to a host path that the rootfs lacks", func(t *testing.T) {
		root := rootfsWith(t, "", "")
		for name, target := range map[string]string{"passwd": hostPasswd, "group": hostGroup} {
			if err := os.Symlink(target, filepath.Join(root, "etc", name)); err != nil {
				t.Fatal(err)
			}
		}
		u, err := resolveUser(root, Security{RunAsUsername: "evil"}, "")
		if err == nil {
			t.Fatalf("resolved %+v through the host's passwd", u)
		}
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error = %v, want ErrInvalid", err)
		}
		// A symlinked /etc/passwd is the image's error whatever the user:
		// it is never followed, not even inside the rootfs.
		if u, err = resolveUser(root, Security{RunAsUser: i64(4242)}, ""); !errors.Is(err, ErrInvalid) {
			t.Fatalf("numeric user = %+v, %v; want ErrInvalid", u, err)
		}
	})

	t.Run("symlink is refused even when its target is inside the rootfs", func(t *testing.T) {
		root := rootfsWith(t, "", "")
		inner := filepath.Join(root, hostDir)
		if err := os.MkdirAll(inner, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(inner, "passwd"), []byte("evil:x:1500:1501::/:/bin/sh\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(inner, "group"), []byte("g:x:1502:evil\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for name, target := range map[string]string{"passwd": hostPasswd, "group": hostGroup} {
			if err := os.Symlink(target, filepath.Join(root, "etc", name)); err != nil {
				t.Fatal(err)
			}
		}
		u, err := resolveUser(root, Security{RunAsUsername: "evil"}, "")
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "is a symlink") {
			t.Fatalf("resolveUser = %+v, %v; want ErrInvalid naming the symlink", u, err)
		}
	})

	t.Run("relative symlink escaping with ..", func(t *testing.T) {
		root := rootfsWith(t, "", "")
		rel, err := filepath.Rel(filepath.Join(root, "etc"), hostPasswd)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(rel, filepath.Join(root, "etc", "passwd")); err != nil {
			t.Fatal(err)
		}
		if u, err := resolveUser(root, Security{RunAsUsername: "evil"}, ""); err == nil {
			t.Fatalf("resolved %+v through a ../ symlink to the host", u)
		}
	})
}

func capsOf(t *testing.T, sec Security) []string {
	t.Helper()
	s := oci.DefaultSpec("x")
	if err := applyCapabilities(s, sec); err != nil {
		t.Fatal(err)
	}
	c := s.Process.Capabilities
	b := slices.Sorted(slices.Values(c.Bounding))
	if !reflect.DeepEqual(b, slices.Sorted(slices.Values(c.Effective))) || !reflect.DeepEqual(b, slices.Sorted(slices.Values(c.Permitted))) {
		t.Fatalf("bounding/effective/permitted differ: %v %v %v", c.Bounding, c.Effective, c.Permitted)
	}
	return b
}

func TestApplyCapabilities(t *testing.T) {
	def := slices.Sorted(slices.Values(oci.DefaultCapabilities))
	without := func(list []string, drop ...string) []string {
		return slices.DeleteFunc(slices.Clone(list), func(c string) bool { return slices.Contains(drop, c) })
	}
	with := func(list []string, add ...string) []string {
		return slices.Sorted(slices.Values(append(slices.Clone(list), add...)))
	}
	all := slices.Sorted(slices.Values(allCapabilities()))
	tests := []struct {
		name string
		sec  Security
		want []string
	}{
		{"defaults", Security{}, def},
		{"empty caps", Security{Capabilities: &Capabilities{}}, def},
		{"add", Security{Capabilities: &Capabilities{Add: []string{"NET_ADMIN", "SYS_TIME"}}}, with(def, "CAP_NET_ADMIN", "CAP_SYS_TIME")},
		{"add with prefix and lowercase", Security{Capabilities: &Capabilities{Add: []string{"CAP_NET_ADMIN", "sys_ptrace", "cap_sys_nice"}}}, with(def, "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_NICE")},
		{"add existing", Security{Capabilities: &Capabilities{Add: []string{"CHOWN"}}}, def},
		{"drop", Security{Capabilities: &Capabilities{Drop: []string{"NET_RAW", "cap_mknod", "kill"}}}, without(def, "CAP_NET_RAW", "CAP_MKNOD", "CAP_KILL")},
		{"drop absent", Security{Capabilities: &Capabilities{Drop: []string{"SYS_ADMIN"}}}, def},
		{"drop ALL", Security{Capabilities: &Capabilities{Drop: []string{"ALL"}}}, []string{}},
		{"drop all lowercase", Security{Capabilities: &Capabilities{Drop: []string{"all"}}}, []string{}},
		{"add ALL", Security{Capabilities: &Capabilities{Add: []string{"ALL"}}}, all},
		{"add ALL drop one", Security{Capabilities: &Capabilities{Add: []string{"ALL"}, Drop: []string{"SYS_ADMIN"}}}, without(all, "CAP_SYS_ADMIN")},
		{"drop ALL + add X", Security{Capabilities: &Capabilities{Drop: []string{"ALL"}, Add: []string{"NET_BIND_SERVICE"}}}, []string{"CAP_NET_BIND_SERVICE"}},
		{"drop ALL + add X, Y", Security{Capabilities: &Capabilities{Drop: []string{"ALL"}, Add: []string{"net_bind_service", "CAP_SYS_ADMIN"}}}, []string{"CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"}},
		{"add and drop same: drop wins", Security{Capabilities: &Capabilities{Add: []string{"SYS_ADMIN"}, Drop: []string{"SYS_ADMIN"}}}, def},
		{"privileged", Security{Privileged: true}, all},
		{"privileged ignores drop", Security{Privileged: true, Capabilities: &Capabilities{Drop: []string{"ALL"}}}, all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := capsOf(t, tt.sec)
			if len(got) != len(tt.want) || (len(got) > 0 && !reflect.DeepEqual(got, tt.want)) {
				t.Fatalf("caps = %v, want %v", got, tt.want)
			}
		})
	}
	if !slices.Contains(all, "CAP_SYS_ADMIN") || !slices.Contains(all, "CAP_CHOWN") || len(all) < 38 {
		t.Fatalf("allCapabilities = %v", all)
	}
}

func TestApplyCapabilitiesAmbient(t *testing.T) {
	s := oci.DefaultSpec("x")
	if err := applyCapabilities(s, Security{Capabilities: &Capabilities{AddAmbient: []string{"net_bind_service"}}}); err != nil {
		t.Fatal(err)
	}
	c := s.Process.Capabilities
	if !reflect.DeepEqual(c.Ambient, []string{"CAP_NET_BIND_SERVICE"}) || !reflect.DeepEqual(c.Inheritable, []string{"CAP_NET_BIND_SERVICE"}) {
		t.Fatalf("ambient %v inheritable %v", c.Ambient, c.Inheritable)
	}
	if !slices.Contains(c.Permitted, "CAP_NET_BIND_SERVICE") {
		t.Fatalf("ambient cap not permitted: %v", c.Permitted)
	}
}

func testSandbox(dir string) *sandbox.Sandbox {
	return &sandbox.Sandbox{
		ID:        "sb1",
		Dir:       dir,
		NetNSPath: "/run/pod-shim/netns/sb1",
		PausePID:  4242,
		State:     sandbox.StateReady,
		Config:    sandbox.Config{Name: "pod", Namespace: "ns", UID: "uid", Hostname: "web-0", CgroupParent: "/kubepods/besteffort/pod1"},
	}
}

func mountByDest(ms []specs.Mount, dest string) *specs.Mount {
	for i := range ms {
		if ms[i].Destination == dest {
			return &ms[i]
		}
	}
	return nil
}

func TestPodMounts(t *testing.T) {
	host := t.TempDir()
	mk := func(name string) string {
		p := filepath.Join(host, name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	data, sub, shared, cfgDir := mk("data"), mk("sub"), mk("shared"), mk("cfg")
	hostsFile := filepath.Join(host, "kubelet-hosts")
	if err := os.WriteFile(hostsFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sb := testSandbox("/run/pod-shim/pods/sb1")

	t.Run("CRI mounts and pod files", func(t *testing.T) {
		c := &Config{Mounts: []Mount{
			{ContainerPath: "/data/sub", HostPath: sub, Propagation: PropagationHostToContainer},
			{ContainerPath: "/data", HostPath: data, Readonly: true},
			{ContainerPath: "/shared", HostPath: shared, Propagation: PropagationBidirectional},
			{ContainerPath: "/etc/hosts", HostPath: hostsFile},
			{ContainerPath: "/etc/config", HostPath: cfgDir, Readonly: true, RecursiveReadonly: true},
		}}
		got, err := podMounts(c, sb, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]specs.Mount{
			"/data/sub":        {Destination: "/data/sub", Type: "bind", Source: sub, Options: []string{"rbind", "rslave", "rw"}},
			"/data":            {Destination: "/data", Type: "bind", Source: data, Options: []string{"rbind", "rprivate", "ro"}},
			"/shared":          {Destination: "/shared", Type: "bind", Source: shared, Options: []string{"rbind", "rshared", "rw"}},
			"/etc/hosts":       {Destination: "/etc/hosts", Type: "bind", Source: hostsFile, Options: []string{"rbind", "rprivate", "rw"}},
			"/etc/config":      {Destination: "/etc/config", Type: "bind", Source: cfgDir, Options: []string{"rbind", "rprivate", "ro", "rro"}},
			"/etc/hostname":    {Destination: "/etc/hostname", Type: "bind", Source: sb.HostnamePath(), Options: []string{"rbind", "rprivate"}},
			"/etc/resolv.conf": {Destination: "/etc/resolv.conf", Type: "bind", Source: sb.ResolvConfPath(), Options: []string{"rbind", "rprivate"}},
			"/dev/shm":         {Destination: "/dev/shm", Type: "bind", Source: sb.ShmPath(), Options: []string{"rbind", "rprivate", "rw"}},
		}
		if len(got) != len(want) {
			t.Fatalf("got %d mounts, want %d: %+v", len(got), len(want), got)
		}
		for _, m := range got {
			w, ok := want[m.Destination]
			if !ok {
				t.Errorf("unexpected mount %+v", m)
				continue
			}
			if !reflect.DeepEqual(m, w) {
				t.Errorf("mount %s = %+v, want %+v", m.Destination, m, w)
			}
		}
		// The kubelet's /etc/hosts replaces the pod's: only one mount there.
		n := 0
		for _, m := range got {
			if m.Destination == "/etc/hosts" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d mounts on /etc/hosts", n)
		}
		// Parents before children.
		idx := func(d string) int {
			return slices.IndexFunc(got, func(m specs.Mount) bool { return m.Destination == d })
		}
		if idx("/data") > idx("/data/sub") {
			t.Errorf("/data after /data/sub: %v", dests(got))
		}
		if !sort.SliceIsSorted(got, func(i, j int) bool {
			return strings.Count(got[i].Destination, "/") < strings.Count(got[j].Destination, "/")
		}) {
			t.Errorf("mounts not sorted by depth: %v", dests(got))
		}
	})

	t.Run("readonly rootfs makes pod files ro", func(t *testing.T) {
		got, err := podMounts(&Config{Security: Security{ReadonlyRootfs: true}}, sb, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"} {
			m := mountByDest(got, d)
			if m == nil || !slices.Contains(m.Options, "ro") {
				t.Errorf("%s = %+v, want ro", d, m)
			}
		}
		if m := mountByDest(got, "/dev/shm"); m == nil || slices.Contains(m.Options, "ro") {
			t.Errorf("/dev/shm = %+v, want rw", m)
		}
	})

	t.Run("host IPC uses host /dev/shm", func(t *testing.T) {
		hsb := testSandbox("/run/pod-shim/pods/sb2")
		hsb.Config.Namespaces.IPC = sandbox.ModeNode
		got, err := podMounts(&Config{}, hsb, nil)
		if err != nil {
			t.Fatal(err)
		}
		if m := mountByDest(got, "/dev/shm"); m == nil || m.Source != "/dev/shm" {
			t.Fatalf("/dev/shm = %+v, want host /dev/shm", m)
		}
	})

	t.Run("kubelet /dev/shm wins", func(t *testing.T) {
		got, err := podMounts(&Config{Mounts: []Mount{{ContainerPath: "/dev/shm", HostPath: data}}}, sb, nil)
		if err != nil {
			t.Fatal(err)
		}
		if m := mountByDest(got, "/dev/shm"); m == nil || m.Source != data {
			t.Fatalf("/dev/shm = %+v", m)
		}
	})

	t.Run("missing host path is created as a dir", func(t *testing.T) {
		missing := filepath.Join(host, "new", "deep", "dir")
		if _, err := podMounts(&Config{Mounts: []Mount{{ContainerPath: "/vol", HostPath: missing}}}, sb, nil); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(missing); err != nil || !fi.IsDir() {
			t.Fatalf("host path not created as a dir: %v", err)
		}
	})

	for _, bad := range []Mount{
		{ContainerPath: "relative/path", HostPath: data},
		{ContainerPath: "", HostPath: data},
		{ContainerPath: "/ok", HostPath: ""},
	} {
		t.Run("invalid "+bad.ContainerPath+"|"+bad.HostPath, func(t *testing.T) {
			if _, err := podMounts(&Config{Mounts: []Mount{bad}}, sb, nil); !errors.Is(err, ErrInvalid) {
				t.Fatalf("podMounts(%+v) = %v, want ErrInvalid", bad, err)
			}
		})
	}
}

func dests(ms []specs.Mount) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Destination)
	}
	return out
}

func nsMap(s *specs.Spec) map[specs.LinuxNamespaceType]string {
	out := map[specs.LinuxNamespaceType]string{}
	for _, ns := range s.Linux.Namespaces {
		out[ns.Type] = ns.Path
	}
	return out
}

func TestJoinPod(t *testing.T) {
	const (
		netns = "/run/pod-shim/netns/sb1"
		uts   = "/proc/4242/ns/uts"
		ipc   = "/proc/4242/ns/ipc"
		pid   = "/proc/4242/ns/pid"
	)
	tests := []struct {
		name  string
		sec   Security
		podNS sandbox.Namespaces
		want  map[specs.LinuxNamespaceType]string
	}{
		{"pod defaults", Security{}, sandbox.Namespaces{},
			map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: netns, specs.UTSNamespace: uts, specs.IPCNamespace: ipc, specs.PIDNamespace: pid, specs.MountNamespace: ""}},
		{"host network", Security{}, sandbox.Namespaces{Network: sandbox.ModeNode},
			map[specs.LinuxNamespaceType]string{specs.IPCNamespace: ipc, specs.PIDNamespace: pid, specs.MountNamespace: ""}},
		{"PID CONTAINER", Security{PIDMode: sandbox.ModeContainer}, sandbox.Namespaces{},
			map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: netns, specs.UTSNamespace: uts, specs.IPCNamespace: ipc, specs.PIDNamespace: "", specs.MountNamespace: ""}},
		{"PID NODE", Security{PIDMode: sandbox.ModeNode}, sandbox.Namespaces{},
			map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: netns, specs.UTSNamespace: uts, specs.IPCNamespace: ipc, specs.MountNamespace: ""}},
		{"pod PID NODE", Security{}, sandbox.Namespaces{PID: sandbox.ModeNode},
			map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: netns, specs.UTSNamespace: uts, specs.IPCNamespace: ipc, specs.MountNamespace: ""}},
		{"host IPC", Security{}, sandbox.Namespaces{IPC: sandbox.ModeNode},
			map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: netns, specs.UTSNamespace: uts, specs.PIDNamespace: pid, specs.MountNamespace: ""}},
		{"all host", Security{PIDMode: sandbox.ModeNode, IPCMode: sandbox.ModeNode}, sandbox.Namespaces{Network: sandbox.ModeNode, PID: sandbox.ModeNode, IPC: sandbox.ModeNode},
			map[specs.LinuxNamespaceType]string{specs.MountNamespace: ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := oci.DefaultSpec("c1")
			sb := testSandbox("/run/pod-shim/pods/sb1")
			sb.Config.Namespaces = tt.podNS
			if tt.podNS.Network == sandbox.ModeNode {
				sb.NetNSPath = ""
			}
			joinPod(s, tt.sec, sb)
			if got := nsMap(s); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("namespaces = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestApplyResources(t *testing.T) {
	s := oci.DefaultSpec("c")
	applyResources(s, nil, 0)
	if s.Linux.Resources.CPU != nil || s.Linux.Resources.Memory != nil || s.Process.OOMScoreAdj != nil {
		t.Fatal("nil resources changed the spec")
	}

	s = oci.DefaultSpec("c")
	applyResources(s, &Resources{
		CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 512, MemoryLimit: 256 << 20, MemorySwapLimit: 512 << 20,
		OOMScoreAdj: 1000, CpusetCPUs: "0-1", CpusetMems: "0",
		HugepageLimits: map[string]uint64{"2MB": 1 << 21},
		Unified:        map[string]string{"memory.high": "200M"},
	}, 0)
	cpu := s.Linux.Resources.CPU
	if cpu == nil || cpu.Period == nil || *cpu.Period != 100000 || cpu.Quota == nil || *cpu.Quota != 50000 ||
		cpu.Shares == nil || *cpu.Shares != 512 || cpu.Cpus != "0-1" || cpu.Mems != "0" {
		t.Errorf("cpu = %+v", cpu)
	}
	mem := s.Linux.Resources.Memory
	if mem == nil || mem.Limit == nil || *mem.Limit != 256<<20 || mem.Swap == nil || *mem.Swap != 512<<20 {
		t.Errorf("memory = %+v", mem)
	}
	if s.Process.OOMScoreAdj == nil || *s.Process.OOMScoreAdj != 1000 {
		t.Errorf("oom_score_adj = %v", s.Process.OOMScoreAdj)
	}
	if !reflect.DeepEqual(s.Linux.Resources.HugepageLimits, []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1 << 21}}) {
		t.Errorf("hugepages = %+v", s.Linux.Resources.HugepageLimits)
	}
	if s.Linux.Resources.Unified["memory.high"] != "200M" {
		t.Errorf("unified = %v", s.Linux.Resources.Unified)
	}
	if len(s.Linux.Resources.Devices) == 0 {
		t.Error("applyResources dropped the device rules")
	}

	oom := []struct {
		name string
		adj  int64
		min  int
		want *int
	}{
		{"below minimum clamped up", -997, 0, ptrInt(0)},
		{"nothing asked under a daemon at -999 is 0, not inherited", 0, -999, ptrInt(0)},
		{"above the kernel's maximum", 1001, 0, ptrInt(1000)},
		{"below negative minimum clamped to it", -999, -500, ptrInt(-500)},
		{"guaranteed with privileges", -997, -1000, ptrInt(-997)},
		{"burstable", 500, 0, ptrInt(500)},
		{"below positive minimum", 2, 100, ptrInt(100)},
	}
	for _, tt := range oom {
		t.Run(tt.name, func(t *testing.T) {
			s := oci.DefaultSpec("c")
			applyResources(s, &Resources{OOMScoreAdj: tt.adj}, tt.min)
			got := s.Process.OOMScoreAdj
			if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
				t.Fatalf("oom_score_adj = %v, want %v", deref(got), deref(tt.want))
			}
			if s.Linux.Resources.CPU != nil || s.Linux.Resources.Memory != nil {
				t.Fatalf("zero limits set cpu/memory: %+v %+v", s.Linux.Resources.CPU, s.Linux.Resources.Memory)
			}
		})
	}

	// Only the fields set.
	s = oci.DefaultSpec("c")
	applyResources(s, &Resources{CPUShares: 2}, 0)
	if c := s.Linux.Resources.CPU; c == nil || *c.Shares != 2 || c.Quota != nil || c.Period != nil {
		t.Errorf("cpu = %+v", c)
	}
	s = oci.DefaultSpec("c")
	applyResources(s, &Resources{MemorySwapLimit: 100}, 0)
	if s.Linux.Resources.Memory != nil {
		t.Errorf("swap without a memory limit set memory: %+v", s.Linux.Resources.Memory)
	}
}

func ptrInt(v int) *int { return &v }

func deref(p *int) any {
	if p == nil {
		return "nil"
	}
	return *p
}

func TestParseSignal(t *testing.T) {
	tests := []struct {
		in   string
		want syscall.Signal
	}{
		{"SIGTERM", syscall.SIGTERM},
		{"TERM", syscall.SIGTERM},
		{"sigterm", syscall.SIGTERM},
		{"9", syscall.SIGKILL},
		{"SIGKILL", syscall.SIGKILL},
		{"SIGUSR1", syscall.SIGUSR1},
		{"usr2", syscall.SIGUSR2},
		{"SIGQUIT", syscall.SIGQUIT},
		{"SIGINT", syscall.SIGINT},
		{"SIGWINCH", syscall.SIGWINCH},
		{"", syscall.SIGTERM},
		{"garbage", syscall.SIGTERM},
		{"SIG", syscall.SIGTERM},
		{"0", syscall.SIGTERM},
		{"-9", syscall.SIGTERM},
	}
	for _, tt := range tests {
		if got := parseSignal(tt.in); got != tt.want {
			t.Errorf("parseSignal(%q) = %v (%d), want %v (%d)", tt.in, got, got, tt.want, tt.want)
		}
	}
}

// pkg/cri passes the CRI Signal enum name minus "SIGNAL_", so every name the
// enum has must parse to its signal, not silently fall back to SIGTERM.
func TestParseSignalCRINames(t *testing.T) {
	tests := []struct {
		in   string
		want syscall.Signal
	}{
		{"SIGIOT", syscall.SIGABRT},
		{"SIGCLD", syscall.SIGCHLD},
		{"SIGPOLL", syscall.SIGIO},
		{"SIGRTMIN", 34},
		{"SIGRTMINPLUS1", 35},
		{"SIGRTMINPLUS15", 49},
		{"SIGRTMAXMINUS1", 63},
		{"SIGRTMAX", 64},
	}
	for _, tt := range tests {
		if got := parseSignal(tt.in); got != tt.want {
			t.Errorf("parseSignal(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestBuildSpec(t *testing.T) {
	rootfs := rootfsWith(t, testPasswd, testGroup)
	host := t.TempDir()
	vol := filepath.Join(host, "vol")
	sb := testSandbox(filepath.Join(host, "pod"))
	sb.Config.Sysctls = map[string]string{"net.core.somaxconn": "1024"}
	im := &image.Image{ID: "sha256:abc", Config: ocispec.ImageConfig{
		Entrypoint: []string{"/entry"},
		Cmd:        []string{"default-arg"},
		Env:        []string{"PATH=/img/bin", "LANG=C"},
		WorkingDir: "/srv",
		User:       "www-data",
	}}
	cfg := &Config{
		Name:  "app",
		Image: "sha256:abc",
		Args:  []string{"--flag"},
		Envs:  []KeyValue{{"LANG", "C.UTF-8"}, {"EXTRA", "1"}},
		Tty:   true,
		Mounts: []Mount{
			{ContainerPath: "/vol", HostPath: vol, Readonly: true},
		},
		Resources: &Resources{CPUQuota: 20000, CPUPeriod: 100000, CPUShares: 204, MemoryLimit: 64 << 20, OOMScoreAdj: -997},
		Security: Security{
			RunAsUser:          i64(1000),
			SupplementalGroups: []int64{2000},
			ReadonlyRootfs:     true,
			NoNewPrivs:         true,
			Capabilities:       &Capabilities{Drop: []string{"ALL"}, Add: []string{"NET_BIND_SERVICE"}},
			MaskedPaths:        []string{"/proc/custom"},
			Sysctls:            map[string]string{"kernel.shm_rmid_forced": "1"},
		},
	}
	s, err := buildSpec(specInput{ID: "c1", Config: cfg, Sandbox: sb, Image: im, Rootfs: rootfs, CgroupDriver: "cgroupfs", MinOOMScoreAdj: 0})
	if err != nil {
		t.Fatal(err)
	}
	if s.Root.Path != rootfs || !s.Root.Readonly {
		t.Errorf("root = %+v", s.Root)
	}
	if !reflect.DeepEqual(s.Process.Args, []string{"/entry", "--flag"}) {
		t.Errorf("args = %q", s.Process.Args)
	}
	if want := []string{"PATH=/img/bin", "LANG=C.UTF-8", "HOSTNAME=web-0", "EXTRA=1"}; !reflect.DeepEqual(s.Process.Env, want) {
		t.Errorf("env = %q, want %q", s.Process.Env, want)
	}
	if s.Process.Cwd != "/srv" || !s.Process.Terminal || !s.Process.NoNewPrivileges {
		t.Errorf("cwd %q terminal %v nnp %v", s.Process.Cwd, s.Process.Terminal, s.Process.NoNewPrivileges)
	}
	if want := (specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 500, 700, 2000}}); !reflect.DeepEqual(s.Process.User, want) {
		t.Errorf("user = %+v, want %+v", s.Process.User, want)
	}
	if c := s.Process.Capabilities; !reflect.DeepEqual(c.Bounding, []string{"CAP_NET_BIND_SERVICE"}) {
		t.Errorf("caps = %+v", c)
	}
	if !reflect.DeepEqual(s.Linux.MaskedPaths, []string{"/proc/custom"}) {
		t.Errorf("masked = %v", s.Linux.MaskedPaths)
	}
	if !reflect.DeepEqual(s.Linux.ReadonlyPaths, oci.DefaultReadonlyPaths) {
		t.Errorf("readonly paths = %v", s.Linux.ReadonlyPaths)
	}
	for _, d := range []string{"/proc", "/dev", "/sys", "/vol", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/dev/shm"} {
		if mountByDest(s.Mounts, d) == nil {
			t.Errorf("no %s mount in %v", d, dests(s.Mounts))
		}
	}
	if m := mountByDest(s.Mounts, "/etc/hosts"); m != nil && m.Source != sb.HostsPath() {
		t.Errorf("/etc/hosts from %s", m.Source)
	}
	// The default /dev mount must come before /dev/shm.
	if slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/dev" }) >
		slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/dev/shm" }) {
		t.Errorf("/dev/shm mounted before /dev: %v", dests(s.Mounts))
	}
	if fi, err := os.Stat(vol); err != nil || !fi.IsDir() {
		t.Errorf("volume host path not created: %v", err)
	}
	wantNS := map[specs.LinuxNamespaceType]string{
		specs.NetworkNamespace: sb.NetNSPath, specs.UTSNamespace: "/proc/4242/ns/uts", specs.IPCNamespace: "/proc/4242/ns/ipc",
		specs.PIDNamespace: "/proc/4242/ns/pid", specs.MountNamespace: "",
	}
	if got := nsMap(s); !reflect.DeepEqual(got, wantNS) {
		t.Errorf("namespaces = %v, want %v", got, wantNS)
	}
	if s.Linux.CgroupsPath != "/kubepods/besteffort/pod1/c1" {
		t.Errorf("cgroups path = %q", s.Linux.CgroupsPath)
	}
	if c := s.Linux.Resources.CPU; c == nil || *c.Quota != 20000 || *c.Period != 100000 || *c.Shares != 204 {
		t.Errorf("cpu = %+v", c)
	}
	if m := s.Linux.Resources.Memory; m == nil || *m.Limit != 64<<20 {
		t.Errorf("memory = %+v", m)
	}
	if s.Process.OOMScoreAdj == nil || *s.Process.OOMScoreAdj != 0 {
		t.Errorf("oom_score_adj = %v, want 0 (clamped)", deref(s.Process.OOMScoreAdj))
	}
	if !reflect.DeepEqual(s.Linux.Sysctl, map[string]string{"kernel.shm_rmid_forced": "1"}) {
		t.Errorf("sysctl = %v", s.Linux.Sysctl)
	}

	t.Run("systemd cgroup driver", func(t *testing.T) {
		ssb := testSandbox(filepath.Join(host, "pod"))
		ssb.Config.CgroupParent = "kubepods-besteffort-podX.slice"
		s, err := buildSpec(specInput{ID: "c2", Config: &Config{Command: []string{"/x"}}, Sandbox: ssb, Image: img(nil, nil), Rootfs: rootfs, CgroupDriver: "systemd"})
		if err != nil {
			t.Fatal(err)
		}
		if s.Linux.CgroupsPath != "kubepods-besteffort-podX.slice:pod-shim:c2" {
			t.Errorf("cgroups path = %q", s.Linux.CgroupsPath)
		}
		if s.Process.Cwd != "/" || s.Process.User.UID != 0 || s.Root.Readonly {
			t.Errorf("defaults: cwd %q user %+v root %+v", s.Process.Cwd, s.Process.User, s.Root)
		}
	})

	t.Run("privileged", func(t *testing.T) {
		s, err := buildSpec(specInput{ID: "c3", Config: &Config{Command: []string{"/x"}, WorkingDir: "/w", Security: Security{Privileged: true}},
			Sandbox: sb, Image: im, Rootfs: rootfs, CgroupDriver: "cgroupfs"})
		if err != nil {
			t.Fatal(err)
		}
		if s.Linux.MaskedPaths != nil || s.Linux.ReadonlyPaths != nil {
			t.Errorf("privileged keeps masked %v / readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
		}
		if !slices.Contains(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN") {
			t.Errorf("privileged lacks CAP_SYS_ADMIN")
		}
		if s.Process.Cwd != "/w" {
			t.Errorf("cwd = %q", s.Process.Cwd)
		}
	})

	t.Run("no command anywhere", func(t *testing.T) {
		_, err := buildSpec(specInput{ID: "c4", Config: &Config{}, Sandbox: sb, Image: img(nil, nil), Rootfs: rootfs})
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("err = %v, want ErrInvalid", err)
		}
	})

	t.Run("unknown run_as_username", func(t *testing.T) {
		_, err := buildSpec(specInput{ID: "c5", Config: &Config{Command: []string{"/x"}, Security: Security{RunAsUsername: "ghost"}}, Sandbox: sb, Image: img(nil, nil), Rootfs: rootfs})
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("err = %v, want ErrInvalid", err)
		}
	})

	t.Run("relative mount", func(t *testing.T) {
		_, err := buildSpec(specInput{ID: "c6", Config: &Config{Command: []string{"/x"}, Mounts: []Mount{{ContainerPath: "x", HostPath: vol}}}, Sandbox: sb, Image: img(nil, nil), Rootfs: rootfs})
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("err = %v, want ErrInvalid", err)
		}
	})
}

// The kubelet passes device-plugin and explicit devices in
// ContainerConfig.devices; they must reach the spec and the device cgroup.
func TestBuildSpecDevices(t *testing.T) {
	rootfs := rootfsWith(t, testPasswd, testGroup)
	sb := testSandbox(filepath.Join(t.TempDir(), "pod"))
	cfg := &Config{Command: []string{"/x"}, Devices: []Device{{ContainerPath: "/dev/mynull", HostPath: "/dev/null", Permissions: "rwm"}}}
	s, err := buildSpec(specInput{ID: "c", Config: cfg, Sandbox: sb, Image: img(nil, nil), Rootfs: rootfs, CgroupDriver: "cgroupfs"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range s.Linux.Devices {
		if d.Path == "/dev/mynull" && d.Type == "c" && d.Major == 1 && d.Minor == 3 {
			found = true
		}
	}
	if !found {
		t.Errorf("linux.devices = %+v, want /dev/mynull (c 1:3)", s.Linux.Devices)
	}
	allowed := false
	for _, r := range s.Linux.Resources.Devices {
		if r.Allow && r.Major != nil && *r.Major == 1 && r.Minor != nil && *r.Minor == 3 {
			allowed = true
		}
	}
	if !allowed {
		t.Errorf("device cgroup %+v does not allow 1:3", s.Linux.Resources.Devices)
	}
}

// A privileged container sees the host's devices and a writable /sys, as in
// containerd and CRI-O.
func TestBuildSpecPrivilegedDevicesAndSysfs(t *testing.T) {
	rootfs := rootfsWith(t, testPasswd, testGroup)
	sb := testSandbox(filepath.Join(t.TempDir(), "pod"))
	s, err := buildSpec(specInput{ID: "c", Config: &Config{Command: []string{"/x"}, Security: Security{Privileged: true}}, Sandbox: sb, Image: img(nil, nil), Rootfs: rootfs, CgroupDriver: "cgroupfs"})
	if err != nil {
		t.Fatal(err)
	}
	if d := s.Linux.Resources.Devices; !slices.ContainsFunc(d, func(r specs.LinuxDeviceCgroup) bool {
		return r.Allow && r.Access == "rwm" && r.Major == nil && r.Minor == nil && (r.Type == "" || r.Type == "a")
	}) {
		t.Errorf("device cgroup %+v does not allow all devices", d)
	}
	if m := mountByDest(s.Mounts, "/sys"); m == nil || slices.Contains(m.Options, "ro") {
		t.Errorf("/sys = %+v, want rw", m)
	}
}

// kubectl debug --target runs an ephemeral container with PID mode TARGET:
// it joins the target container's PID namespace by its init pid (which the
// manager looks up before buildSpec), never a new one. joinPod alone leaves
// the path for buildSpec to fill in, so the spec is checked whole.
func TestBuildSpecTargetPID(t *testing.T) {
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Command: []string{"/x"}, Security: Security{PIDMode: sandbox.ModeTarget, TargetID: "target-container"}}
	in := specInput{ID: "c1", Config: cfg, Sandbox: testSandbox(dir), Image: &image.Image{}, Rootfs: rootfs, CgroupDriver: "cgroupfs", TargetPID: 4242}
	s, err := buildSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := nsMap(s)[specs.PIDNamespace]; got != "/proc/4242/ns/pid" {
		t.Fatalf("PID namespace path %q, want the target's /proc/4242/ns/pid", got)
	}
	in.TargetPID = 0
	if _, err := buildSpec(in); !errors.Is(err, ErrInvalid) {
		t.Fatalf("TARGET without the target's pid: %v, want ErrInvalid", err)
	}
}

// The same config must always give the same spec: bundles are compared and
// rewritten on recovery.
func TestApplyResourcesHugepagesDeterministic(t *testing.T) {
	r := &Resources{HugepageLimits: map[string]uint64{"2MB": 1, "1GB": 2, "64KB": 3, "32MB": 4}}
	first := oci.DefaultSpec("c")
	applyResources(first, r, 0)
	var order []string
	for _, h := range first.Linux.Resources.HugepageLimits {
		order = append(order, h.Pagesize)
	}
	if want := []string{"64KB", "2MB", "32MB", "1GB"}; !reflect.DeepEqual(order, want) {
		t.Fatalf("hugepage order %v, want smallest page first %v", order, want)
	}
	for range 50 {
		s := oci.DefaultSpec("c")
		applyResources(s, r, 0)
		if !reflect.DeepEqual(s.Linux.Resources.HugepageLimits, first.Linux.Resources.HugepageLimits) {
			t.Fatalf("hugepage order changed: %v vs %v", s.Linux.Resources.HugepageLimits, first.Linux.Resources.HugepageLimits)
		}
	}
}
