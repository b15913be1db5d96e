package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/pod-shim/pod-shim/pkg/network"
)

func TestResolvConf(t *testing.T) {
	host, hostErr := os.ReadFile("/etc/resolv.conf")
	tests := []struct {
		name string
		dns  *DNS
		want string
		host bool
	}{
		{name: "nil copies the host's", dns: nil, host: true},
		{name: "empty copies the host's", dns: &DNS{}, host: true},
		{name: "servers only", dns: &DNS{Servers: []string{"10.96.0.10", "fd00::a"}},
			want: "nameserver 10.96.0.10\nnameserver fd00::a\n"},
		{name: "kubelet cluster-first", dns: &DNS{
			Servers:  []string{"10.96.0.10"},
			Searches: []string{"ns.svc.cluster.local", "svc.cluster.local", "cluster.local"},
			Options:  []string{"ndots:5", "edns0"},
		}, want: "search ns.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5 edns0\n"},
		{name: "searches only", dns: &DNS{Searches: []string{"a.b"}}, want: "search a.b\n"},
		{name: "options only", dns: &DNS{Options: []string{"ndots:2"}}, want: "options ndots:2\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolvConf(tt.dns)
			if tt.host {
				if hostErr != nil {
					if len(got) != 0 {
						t.Fatalf("no host resolv.conf (%v) but got %q", hostErr, got)
					}
					return
				}
				if string(got) != string(host) {
					t.Fatalf("got %q, want the host's %q", got, host)
				}
				return
			}
			if string(got) != tt.want {
				t.Fatalf("resolvConf = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := Config{Name: "web", Namespace: "default", UID: "1234-abcd"}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr bool
	}{
		{"valid", func(*Config) {}, false},
		{"empty name", func(c *Config) { c.Name = "" }, true},
		{"empty namespace", func(c *Config) { c.Namespace = "" }, true},
		{"slash in name", func(c *Config) { c.Name = "a/b" }, true},
		{"slash in namespace", func(c *Config) { c.Namespace = "../x" }, true},
		{"slash in uid", func(c *Config) { c.UID = "x/y" }, true},
		{"NUL in name", func(c *Config) { c.Name = "a\x00b" }, true},
		{"empty uid is fine", func(c *Config) { c.UID = "" }, false},
		{"net sysctl in pod network", func(c *Config) { c.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"} }, false},
		{"net sysctl with host network", func(c *Config) {
			c.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"}
			c.Namespaces.Network = ModeNode
		}, true},
		{"non-net sysctl with host network", func(c *Config) {
			c.Sysctls = map[string]string{"kernel.shm_rmid_forced": "1"}
			c.Namespaces.Network = ModeNode
		}, false},
		{"IPC sysctl with host IPC", func(c *Config) {
			c.Sysctls = map[string]string{"kernel.shm_rmid_forced": "1"}
			c.Namespaces.IPC = ModeNode
		}, true},
		{"mqueue sysctl with host IPC", func(c *Config) {
			c.Sysctls = map[string]string{"fs.mqueue.msg_max": "20"}
			c.Namespaces.IPC = ModeNode
		}, true},
		{"domainname with host network", func(c *Config) {
			c.Sysctls = map[string]string{"kernel.domainname": "x"}
			c.Namespaces.Network = ModeNode
		}, true},
		{"domainname in pod network", func(c *Config) { c.Sysctls = map[string]string{"kernel.domainname": "x"} }, false},
		{"not namespaced sysctl", func(c *Config) { c.Sysctls = map[string]string{"vm.swappiness": "10"} }, true},
		{"malformed sysctl name", func(c *Config) { c.Sysctls = map[string]string{"net..ipv4": "1"} }, true},
		{"path-like sysctl name", func(c *Config) { c.Sysctls = map[string]string{"../../etc/x": "1"} }, true},
		{"newline in sysctl value", func(c *Config) { c.Sysctls = map[string]string{"net.ipv4.ip_forward": "1\n2"} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			err := validate(c)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("validate = %v, want ErrInvalid", err)
				}
			} else if err != nil {
				t.Fatalf("validate = %v", err)
			}
		})
	}
}

func TestReservedName(t *testing.T) {
	a := Config{Name: "web", Namespace: "default", UID: "u1", Attempt: 0}
	if got := reservedName(a); got != "web_default_u1_0" {
		t.Fatalf("reservedName = %q", got)
	}
	distinct := []Config{
		a,
		{Name: "web", Namespace: "default", UID: "u1", Attempt: 1},
		{Name: "web", Namespace: "other", UID: "u1"},
		{Name: "web", Namespace: "default", UID: "u2"},
		{Name: "api", Namespace: "default", UID: "u1"},
	}
	seen := map[string]bool{}
	for _, c := range distinct {
		n := reservedName(c)
		if seen[n] {
			t.Errorf("reservedName collision: %q", n)
		}
		seen[n] = true
	}
	// Fields that are not identity do not change the name.
	b := a
	b.Hostname, b.Labels = "other", map[string]string{"x": "y"}
	if reservedName(a) != reservedName(b) {
		t.Errorf("non-identity fields changed the reserved name")
	}
}

func TestWriteHosts(t *testing.T) {
	m := &Manager{}
	const base = "127.0.0.1\tlocalhost\n"
	tests := []struct {
		name     string
		hostname string
		ips      []string
		hostNet  bool
		wantLine string // must be present; "" means no pod line
	}{
		{name: "pod IP and hostname", hostname: "web-0", ips: []string{"10.88.0.5"}, wantLine: "10.88.0.5\tweb-0\n"},
		{name: "FQDN adds the short name", hostname: "web-0.svc.cluster.local", ips: []string{"10.88.0.5", "fd00::5"}, wantLine: "10.88.0.5\tweb-0.svc.cluster.local\tweb-0\n"},
		{name: "no IP yet", hostname: "web-0"},
		{name: "no hostname", ips: []string{"10.88.0.5"}},
		{name: "host network copies /etc/hosts", hostname: "web-0", hostNet: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := &Sandbox{ID: "x", Dir: t.TempDir(), Config: Config{Hostname: tt.hostname}}
			if tt.ips != nil {
				sb.Network = &network.Result{IPs: tt.ips}
			}
			if tt.hostNet {
				sb.Config.Namespaces.Network = ModeNode
			}
			if err := m.writeHosts(sb); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(sb.HostsPath())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(sb.HostsPath() + ".tmp"); !os.IsNotExist(err) {
				t.Errorf("temp file left behind: %v", err)
			}
			if tt.hostNet {
				want, err := os.ReadFile("/etc/hosts")
				if err != nil {
					t.Skipf("no host /etc/hosts: %v", err)
				}
				if string(got) != string(want) {
					t.Fatalf("hosts = %q, want the host's %q", got, want)
				}
				return
			}
			if !strings.HasPrefix(string(got), base) || !strings.Contains(string(got), "::1\tlocalhost ip6-localhost ip6-loopback\n") {
				t.Fatalf("hosts lacks localhost entries: %q", got)
			}
			lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
			if tt.wantLine == "" {
				if len(lines) != 6 {
					t.Fatalf("hosts has a pod line without IP or hostname: %q", got)
				}
				return
			}
			if !strings.HasSuffix(string(got), tt.wantLine) || strings.Count(string(got), tt.wantLine) != 1 {
				t.Fatalf("hosts = %q, want it to end with %q", got, tt.wantLine)
			}
		})
	}

	t.Run("rewrite replaces the provisional file", func(t *testing.T) {
		sb := &Sandbox{ID: "x", Dir: t.TempDir(), Config: Config{Hostname: "h"}}
		if err := m.writeHosts(sb); err != nil {
			t.Fatal(err)
		}
		sb.Network = &network.Result{IPs: []string{"10.0.0.9"}}
		if err := m.writeHosts(sb); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(sb.HostsPath())
		if !strings.HasSuffix(string(got), "10.0.0.9\th\n") {
			t.Fatalf("hosts = %q", got)
		}
	})

	t.Run("missing dir fails", func(t *testing.T) {
		sb := &Sandbox{ID: "x", Dir: filepath.Join(t.TempDir(), "absent"), Config: Config{Hostname: "h"}}
		if err := m.writeHosts(sb); err == nil {
			t.Fatal("writeHosts into a missing dir succeeded")
		}
	})
}

func TestSandboxAccessors(t *testing.T) {
	sb := &Sandbox{Dir: "/run/p/pods/x"}
	if sb.IP() != "" || sb.AdditionalIPs() != nil {
		t.Fatal("IPs without a network result")
	}
	sb.Network = &network.Result{IPs: []string{"10.0.0.1"}}
	if sb.IP() != "10.0.0.1" || sb.AdditionalIPs() != nil {
		t.Fatalf("single IP: %q %v", sb.IP(), sb.AdditionalIPs())
	}
	sb.Network.IPs = append(sb.Network.IPs, "fd00::1")
	if !reflect.DeepEqual(sb.AdditionalIPs(), []string{"fd00::1"}) {
		t.Fatalf("additional = %v", sb.AdditionalIPs())
	}
	for got, want := range map[string]string{
		sb.HostnamePath(): "/run/p/pods/x/hostname", sb.HostsPath(): "/run/p/pods/x/hosts",
		sb.ResolvConfPath(): "/run/p/pods/x/resolv.conf", sb.ShmPath(): "/run/p/pods/x/shm",
	} {
		if got != want {
			t.Errorf("path %q, want %q", got, want)
		}
	}
}

func nsMap(s *specs.Spec) map[specs.LinuxNamespaceType]string {
	out := map[specs.LinuxNamespaceType]string{}
	for _, ns := range s.Linux.Namespaces {
		out[ns.Type] = ns.Path
	}
	return out
}

func TestPauseSpec(t *testing.T) {
	m := &Manager{}
	const netns = "/run/pod-shim/netns/sb"
	tests := []struct {
		name   string
		ns     Namespaces
		netns  string
		want   map[specs.LinuxNamespaceType]string
		wantHN string
	}{
		{"pod network", Namespaces{}, netns,
			map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: netns, specs.UTSNamespace: "", specs.IPCNamespace: "", specs.PIDNamespace: "", specs.MountNamespace: ""}, "web-0"},
		{"host network", Namespaces{Network: ModeNode}, "",
			map[specs.LinuxNamespaceType]string{specs.IPCNamespace: "", specs.PIDNamespace: "", specs.MountNamespace: ""}, ""},
		{"node PID", Namespaces{PID: ModeNode}, netns,
			map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: netns, specs.UTSNamespace: "", specs.IPCNamespace: "", specs.MountNamespace: ""}, "web-0"},
		{"node IPC", Namespaces{IPC: ModeNode}, netns,
			map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: netns, specs.UTSNamespace: "", specs.PIDNamespace: "", specs.MountNamespace: ""}, "web-0"},
		{"all host", Namespaces{Network: ModeNode, PID: ModeNode, IPC: ModeNode}, "",
			map[specs.LinuxNamespaceType]string{specs.MountNamespace: ""}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := &Sandbox{
				ID: "sb", Dir: "/run/pod-shim/pods/sb", NetNSPath: tt.netns, CgroupPath: "/kubepods/pod1/sb",
				Config: Config{Name: "web", Namespace: "ns", Hostname: "web-0", Namespaces: tt.ns, Sysctls: map[string]string{"kernel.shm_rmid_forced": "1"}},
			}
			s := m.pauseSpec(sb, "/pause-root", []string{"/pause"})
			if got := nsMap(s); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("namespaces = %v, want %v", got, tt.want)
			}
			if s.Hostname != tt.wantHN {
				t.Errorf("hostname = %q, want %q", s.Hostname, tt.wantHN)
			}
			if s.Root == nil || s.Root.Path != "/pause-root" || !s.Root.Readonly {
				t.Errorf("root = %+v, want read-only /pause-root", s.Root)
			}
			c := s.Process.Capabilities
			if c == nil || len(c.Bounding)+len(c.Effective)+len(c.Permitted)+len(c.Inheritable)+len(c.Ambient) != 0 {
				t.Errorf("capabilities = %+v, want none", c)
			}
			if s.Process.User.UID != 65535 || s.Process.User.GID != 65535 {
				t.Errorf("user = %+v, want 65535", s.Process.User)
			}
			if !s.Process.NoNewPrivileges {
				t.Error("no_new_privileges not set")
			}
			if !reflect.DeepEqual(s.Process.Args, []string{"/pause"}) || s.Process.Cwd != "/" {
				t.Errorf("args %q cwd %q", s.Process.Args, s.Process.Cwd)
			}
			if s.Linux.CgroupsPath != "/kubepods/pod1/sb" {
				t.Errorf("cgroups path = %q", s.Linux.CgroupsPath)
			}
			if s.Linux.Sysctl["kernel.shm_rmid_forced"] != "1" {
				t.Errorf("sysctls = %v", s.Linux.Sysctl)
			}
			var dests []string
			for _, m := range s.Mounts {
				dests = append(dests, m.Destination)
			}
			if !slices.Contains(dests, "/proc") || !slices.Contains(dests, "/dev") || !slices.Contains(dests, "/sys") {
				t.Errorf("mounts = %v", dests)
			}
		})
	}
}
