package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pod-shim/pod-shim/pkg/config"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultValidates(t *testing.T) {
	if err := config.Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	custom := config.Default()
	custom.Listen = "/tmp/x.sock"
	custom.SocketMode = "0600"
	custom.LogLevel = "debug"
	custom.CgroupDriver = "systemd"
	custom.PauseBinary = "/usr/local/bin/pause"
	custom.Runtime = config.Runtime{Path: "/usr/sbin/runc", Root: "/run/runc-x"}
	custom.CNI.BinDirs = []string{"/a", "/b", "/c"}
	custom.CNI.Timeout = config.Duration{Duration: 45 * time.Second}
	custom.Registry.Insecure = []string{"reg.local:5000"}
	custom.Registry.Mirrors = map[string][]string{"docker.io": {"http://127.0.0.1:5000", "https://m.example"}}
	custom.MaxLogLine = 4096
	custom.ImagePullTimeout = config.Duration{Duration: 90 * time.Minute}

	for name, c := range map[string]config.Config{"default": config.Default(), "custom": custom} {
		t.Run(name, func(t *testing.T) {
			data, err := c.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got, err := config.Load(writeFile(t, string(data)), false)
			if err != nil {
				t.Fatalf("Load(Marshal()) = %v\n%s", err, data)
			}
			if !reflect.DeepEqual(got, c) {
				t.Fatalf("round trip differs:\n got %#v\nwant %#v\n%s", got, c, data)
			}
		})
	}
}

func TestMarshalEveryKeyCommented(t *testing.T) {
	data, err := config.Default().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	keys := 0
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		keys++
		if i == 0 || !strings.HasPrefix(strings.TrimSpace(lines[i-1]), "#") {
			t.Errorf("line %d %q has no # comment line above it", i+1, l)
		}
	}
	// 12 top-level keys, 3 tables with 2+3+1 keys, 1 sub-table.
	if keys < 20 {
		t.Errorf("only %d keys/tables in the default config:\n%s", keys, data)
	}
	for _, k := range []string{"listen", "socket_mode", "root", "state", "log_level", "cgroup_driver", "sandbox_image",
		"pause_binary", "max_container_log_line_size", "image_pull_timeout", "[runtime]", "path", "[cni]", "conf_dir",
		"bin_dirs", "timeout", "[registry]", "insecure", "[registry.mirrors]"} {
		if !strings.Contains(string(data), "\n"+k) {
			t.Errorf("key %s missing from default config", k)
		}
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name     string
		content  *string // nil: no file
		optional bool
		wantErr  string
		check    func(t *testing.T, c config.Config)
	}{
		{name: "missing optional file gives defaults", optional: true, check: func(t *testing.T, c config.Config) {
			if !reflect.DeepEqual(c, config.Default()) {
				t.Errorf("got %#v, want defaults", c)
			}
		}},
		{name: "missing required file", optional: false, wantErr: "read config"},
		{name: "unknown key", content: ptr("listen = '/x'\nno_such_key = 1\n"), wantErr: "unknown keys"},
		{name: "unknown key in table", content: ptr("[cni]\nbogus = 'x'\n"), wantErr: "unknown keys"},
		{name: "bad cgroup driver", content: ptr("cgroup_driver = 'cgroupv3'\n"), wantErr: "cgroup_driver"},
		{name: "empty root", content: ptr("root = ''\n"), wantErr: "must be set"},
		{name: "small log line", content: ptr("max_container_log_line_size = 10\n"), wantErr: "between 1024 and"},
		{name: "bad duration", content: ptr("image_pull_timeout = 'soon'\n"), wantErr: "parse"},
		{name: "durations parse", content: ptr("image_pull_timeout = '30s'\n[cni]\ntimeout = '1m30s'\n"), check: func(t *testing.T, c config.Config) {
			if c.ImagePullTimeout.Duration != 30*time.Second {
				t.Errorf("image_pull_timeout = %v, want 30s", c.ImagePullTimeout.Duration)
			}
			if c.CNI.Timeout.Duration != 90*time.Second {
				t.Errorf("cni.timeout = %v, want 1m30s", c.CNI.Timeout.Duration)
			}
		}},
		{name: "partial file keeps other defaults", content: ptr("log_level = 'warn'\ncgroup_driver = 'systemd'\n[registry.mirrors]\n'docker.io' = ['http://127.0.0.1:5000']\n"), check: func(t *testing.T, c config.Config) {
			want := config.Default()
			want.LogLevel = "warn"
			want.CgroupDriver = "systemd"
			want.Registry.Mirrors = map[string][]string{"docker.io": {"http://127.0.0.1:5000"}}
			if !reflect.DeepEqual(c, want) {
				t.Errorf("got %#v\nwant %#v", c, want)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "absent.toml")
			if tt.content != nil {
				path = writeFile(t, *tt.content)
			}
			c, err := config.Load(path, tt.optional)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load() = %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mod    func(*config.Config)
		wantOK bool
	}{
		{"cgroupfs", func(c *config.Config) { c.CgroupDriver = "cgroupfs" }, true},
		{"systemd", func(c *config.Config) { c.CgroupDriver = "systemd" }, true},
		{"empty driver", func(c *config.Config) { c.CgroupDriver = "" }, false},
		{"bad driver", func(c *config.Config) { c.CgroupDriver = "Systemd" }, false},
		{"no listen", func(c *config.Config) { c.Listen = "" }, false},
		{"no state", func(c *config.Config) { c.State = "" }, false},
		{"log line 1024", func(c *config.Config) { c.MaxLogLine = 1024 }, true},
		{"log line 1023", func(c *config.Config) { c.MaxLogLine = 1023 }, false},
		{"log line 1 MiB", func(c *config.Config) { c.MaxLogLine = 1 << 20 }, true},
		{"log line over 1 MiB", func(c *config.Config) { c.MaxLogLine = 1<<20 + 1 }, false},
		{"listen path", func(c *config.Config) { c.Listen = "/run/x.sock" }, true},
		{"listen unix URL", func(c *config.Config) { c.Listen = "unix:///run/x.sock" }, true},
		{"listen relative path", func(c *config.Config) { c.Listen = "x.sock" }, true},
		{"listen unix URL without absolute path", func(c *config.Config) { c.Listen = "unix://run/x.sock" }, false},
		{"listen unix: without slashes", func(c *config.Config) { c.Listen = "unix:/run/x.sock" }, false},
		{"listen tcp URL", func(c *config.Config) { c.Listen = "tcp://127.0.0.1:10000" }, false},
		{"listen host:port", func(c *config.Config) { c.Listen = "127.0.0.1:10000" }, false},
		{"socket mode 0600", func(c *config.Config) { c.SocketMode = "0600" }, true},
		{"socket mode not octal", func(c *config.Config) { c.SocketMode = "rw-rw----" }, false},
		{"socket mode too wide", func(c *config.Config) { c.SocketMode = "4777" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			tt.mod(&c)
			if err := c.Validate(); (err == nil) != tt.wantOK {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.wantOK)
			}
		})
	}
}

func TestListenPath(t *testing.T) {
	c := config.Default()
	c.Listen = "unix:///run/pod-shim/x.sock"
	p, err := c.ListenPath()
	if err != nil || p != "/run/pod-shim/x.sock" {
		t.Fatalf("ListenPath() = %q, %v", p, err)
	}
	// From the file too: a URL in config.toml is read, a bad one refused.
	if _, err := config.Load(writeFile(t, "listen = 'unix:///run/y.sock'\n"), false); err != nil {
		t.Fatalf("unix:// URL in config.toml: %v", err)
	}
	if _, err := config.Load(writeFile(t, "listen = 'tcp://0.0.0.0:1'\n"), false); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("tcp URL in config.toml: err = %v, want a listen error", err)
	}
}

// An operator with a typo in the config must be told which key is wrong.
func TestLoadUnknownKeyNamed(t *testing.T) {
	_, err := config.Load(writeFile(t, "listen = '/x'\nno_such_key = 1\n"), false)
	if err == nil || !strings.Contains(err.Error(), "no_such_key") {
		t.Fatalf("Load() error = %v, want it to name no_such_key", err)
	}
}

func ptr(s string) *string { return &s }
