// Package config is pod-shim's configuration: a TOML file whose every key has
// a default written out by `pod-shim config default`, overridden by flags.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/pod-shim/pod-shim/pkg/unixsock"
)

const maxLogLineLimit = 1 << 20

// DefaultPath is where the daemon looks for its config file.
const DefaultPath = "/etc/pod-shim/config.toml"

// Config is the whole daemon configuration.
type Config struct {
	Listen           string   `toml:"listen" comment:"CRI gRPC unix socket the kubelet and crictl connect to: a path or unix:///absolute/path"`
	SocketMode       string   `toml:"socket_mode" comment:"permission bits of the socket (octal); it is created with them, whatever the umask"`
	Root             string   `toml:"root" comment:"durable state: metadata store, images, writable layers"`
	State            string   `toml:"state" comment:"volatile state: sockets, pinned netns, pod dirs, runc state (tmpfs)"`
	LogLevel         string   `toml:"log_level" comment:"debug, info, warn or error"`
	CgroupDriver     string   `toml:"cgroup_driver" comment:"cgroupfs or systemd, reported to the kubelet through RuntimeConfig"`
	SandboxImage     string   `toml:"sandbox_image" comment:"pause image; when it is not in the image store pod-shim runs its built-in pause binary instead (no pull)"`
	PauseBinary      string   `toml:"pause_binary" comment:"built-in pause binary; empty means pod-shim-pause next to the pod-shim executable"`
	Runtime          Runtime  `toml:"runtime" comment:"the OCI runtime that runs containers"`
	CNI              CNI      `toml:"cni" comment:"pod networking through CNI plugins"`
	Registry         Registry `toml:"registry" comment:"image registries: plain-HTTP hosts and mirrors"`
	MaxLogLine       int      `toml:"max_container_log_line_size" comment:"container log lines longer than this many bytes are split into partial (P) records"`
	ImagePullTimeout Duration `toml:"image_pull_timeout" comment:"upper bound of one image pull"`

	// Node services: streaming sessions and metrics.
	StreamServer   StreamServer `toml:"stream_server" comment:"the HTTP server kubectl/crictl exec, attach and port-forward sessions connect to"`
	MetricsAddress string       `toml:"metrics_address" comment:"host:port serving Prometheus /metrics; empty disables it"`
	DebugAddress   string       `toml:"debug_address" comment:"host:port serving Go's /debug/pprof (profiles, goroutine dumps, command line); empty disables it. Anyone who reaches it can read the daemon's state: keep it on loopback, and off in production"`

	// Container runtimes: RuntimeClass handlers and CDI devices.
	Runtimes    map[string]RuntimeHandler `toml:"runtimes" comment:"RuntimeClass handlers by name, e.g. [runtimes.crun] path = \"/usr/bin/crun\"; \"\" and \"runc\" are always the [runtime] above"`
	CDISpecDirs []string                  `toml:"cdi_spec_dirs" comment:"directories of CDI device specs, later ones overriding earlier"`

	NRI NRI `toml:"nri" comment:"Node Resource Interface: plugins that see and adjust pods and containers (as in containerd and CRI-O)"`
}

// NRI configures hosting of NRI plugins.
type NRI struct {
	Enable              bool     `toml:"enable" comment:"host NRI plugins; off costs nothing on the request path"`
	SocketPath          string   `toml:"socket_path" comment:"unix socket external plugins connect to"`
	PluginPath          string   `toml:"plugin_path" comment:"directory of plugins started by pod-shim (NN-name executables)"`
	PluginConfigPath    string   `toml:"plugin_config_path" comment:"directory of configuration for the plugins pod-shim starts"`
	RegistrationTimeout Duration `toml:"plugin_registration_timeout" comment:"how long a plugin may take to register"`
	RequestTimeout      Duration `toml:"plugin_request_timeout" comment:"how long a plugin may take to handle one event (also bounds Synchronize)"`
	DisableConnections  bool     `toml:"disable_connections" comment:"do not listen on socket_path: only plugins from plugin_path run"`
}

// RuntimeHandler is one RuntimeClass handler: an OCI runtime with runc's CLI.
type RuntimeHandler struct {
	Path    string            `toml:"path" comment:"runtime binary (name looked up in PATH, or absolute path)"`
	Root    string            `toml:"root" comment:"its --root; empty means <state>/runtimes/<handler name>"`
	Options map[string]string `toml:"options" comment:"runtime options; \"systemd_cgroup\" = \"true\" passes --systemd-cgroup"`
}

// StreamServer configures the exec/attach/port-forward server.
type StreamServer struct {
	Address     string   `toml:"address" comment:"address to listen on; keep it on loopback unless TLS is set"`
	Port        int      `toml:"port" comment:"TCP port; 0 picks a free one"`
	TLSCert     string   `toml:"tls_cert" comment:"PEM certificate; with tls_key serves HTTPS"`
	TLSKey      string   `toml:"tls_key" comment:"PEM private key of tls_cert"`
	IdleTimeout Duration `toml:"idle_timeout" comment:"a session with no traffic for this long is closed"`
}

// Runtime names the OCI runtime binary.
type Runtime struct {
	Path string `toml:"path" comment:"runc binary (name looked up in PATH, or absolute path)"`
	Root string `toml:"root" comment:"runc --root; empty means <state>/runc"`
}

// CNI configures pod networking.
type CNI struct {
	ConfDir string   `toml:"conf_dir" comment:"directory of .conf/.conflist files; the lexically first is the pod network"`
	BinDirs []string `toml:"bin_dirs" comment:"directories searched for plugin binaries"`
	Timeout Duration `toml:"timeout" comment:"upper bound of one CNI ADD or DEL"`
}

// Registry configures how images are fetched.
type Registry struct {
	Insecure []string            `toml:"insecure" comment:"registries reached over plain HTTP (localhost and 127.0.0.1 always are)"`
	Mirrors  map[string][]string `toml:"mirrors" comment:"per registry host, endpoints tried in order before the host itself, e.g. \"docker.io\" = [\"http://127.0.0.1:5000\"]"`

	// What one image pull or import may cost; over a limit the pull fails
	// and leaves nothing behind. 0 means the built-in default (for
	// max_pull_bytes: no budget).
	MaxManifestBytes   int64  `toml:"max_manifest_bytes" comment:"largest manifest or index accepted, in bytes"`
	MaxConfigBytes     int64  `toml:"max_config_bytes" comment:"largest image config accepted, in bytes"`
	MaxLayers          int    `toml:"max_layers" comment:"most layers an image may have (containerd: 128)"`
	MaxZstdWindowBytes uint64 `toml:"max_zstd_window_bytes" comment:"largest zstd window a layer may ask the decoder for, in bytes (bounds the memory of a pull)"`
	MaxPullBytes       int64  `toml:"max_pull_bytes" comment:"budget of one pull: bytes its layers may write (file contents + 512 per entry); 0 means no budget"`
}

// Duration is a time.Duration written as "2m30s" in TOML.
type Duration struct{ time.Duration }

// MarshalText writes the duration as Go syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads Go duration syntax.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// Default returns the configuration pod-shim runs with when nothing is set.
func Default() Config {
	return Config{
		Listen:       "/run/pod-shim/pod-shim.sock",
		SocketMode:   "0660",
		Root:         "/var/lib/pod-shim",
		State:        "/run/pod-shim",
		LogLevel:     "info",
		CgroupDriver: "cgroupfs",
		SandboxImage: "registry.k8s.io/pause:3.10",
		Runtime:      Runtime{Path: "runc"},
		CNI: CNI{
			ConfDir: "/etc/cni/net.d",
			BinDirs: []string{"/opt/cni/bin", "/usr/lib/cni"},
			Timeout: Duration{2 * time.Minute},
		},
		Registry: Registry{Insecure: []string{}, Mirrors: map[string][]string{},
			MaxManifestBytes: 4 << 20, MaxConfigBytes: 8 << 20, MaxLayers: 128, MaxZstdWindowBytes: 128 << 20},
		MaxLogLine:       16 * 1024,
		ImagePullTimeout: Duration{10 * time.Minute},
		StreamServer:     StreamServer{Address: "127.0.0.1", IdleTimeout: Duration{4 * time.Hour}},
		Runtimes:         map[string]RuntimeHandler{},
		CDISpecDirs:      []string{"/etc/cdi", "/var/run/cdi"},
		NRI: NRI{
			SocketPath:          "/var/run/nri/nri.sock",
			PluginPath:          "/opt/nri/plugins",
			PluginConfigPath:    "/etc/nri/conf.d",
			RegistrationTimeout: Duration{5 * time.Second},
			// NRI bounds a plugin's whole Synchronize by this timeout; a
			// plugin that syncs while pods are being created (critest's
			// late-joining plugin) takes over 2 s, and a plugin dropped
			// mid-sync never hears of the containers created meanwhile.
			RequestTimeout: Duration{10 * time.Second},
		},
	}
}

// Load reads path over the defaults. A missing file is not an error when
// optional is true (the default path), so a bare machine runs with defaults.
func Load(path string, optional bool) (Config, error) {
	c := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		if optional && errors.Is(err, os.ErrNotExist) {
			return c, nil
		}
		return c, fmt.Errorf("read config: %w", err)
	}
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		// go-toml's own messages name neither the key nor the line;
		// String() does, and an operator needs both.
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			return c, fmt.Errorf("parse %s: unknown keys:\n%s", path, strict.String())
		}
		var decErr *toml.DecodeError
		if errors.As(err, &decErr) {
			return c, fmt.Errorf("parse %s: %s", path, decErr.String())
		}
		return c, fmt.Errorf("parse %s: %w", path, err)
	}
	return c, c.Validate()
}

// Validate rejects values the daemon cannot run with.
func (c Config) Validate() error {
	switch c.CgroupDriver {
	case "cgroupfs", "systemd":
	default:
		return fmt.Errorf("cgroup_driver %q: want cgroupfs or systemd", c.CgroupDriver)
	}
	if c.Listen == "" || c.Root == "" || c.State == "" {
		return errors.New("listen, root and state must be set")
	}
	if _, err := c.ListenPath(); err != nil {
		return err
	}
	if _, err := c.SocketPerm(); err != nil {
		return err
	}
	for name, h := range c.Runtimes {
		if name == "" || h.Path == "" {
			return fmt.Errorf("runtimes.%q: a handler needs a name and a path", name)
		}
	}
	// Each container stream holds a buffer of this size in its pod's
	// monitor, which is meant to stay a few MiB.
	if c.MaxLogLine < 1024 || c.MaxLogLine > maxLogLineLimit {
		return fmt.Errorf("max_container_log_line_size %d: must be between 1024 and %d", c.MaxLogLine, maxLogLineLimit)
	}
	return nil
}

// ListenPath is the file system path of the CRI socket that Listen names,
// as a path or a unix:// URL.
func (c Config) ListenPath() (string, error) {
	p, err := unixsock.ParseEndpoint(c.Listen)
	if err != nil {
		return "", fmt.Errorf("listen: %w", err)
	}
	return p, nil
}

// SocketPerm is socket_mode as permission bits.
func (c Config) SocketPerm() (os.FileMode, error) {
	m, err := strconv.ParseUint(c.SocketMode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("socket_mode %q: want octal permission bits such as 0660", c.SocketMode)
	}
	return os.FileMode(m), nil
}

// Marshal renders c as commented TOML.
func (c Config) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# pod-shim configuration. Every key is shown with its default.\n\n")
	enc := toml.NewEncoder(&buf)
	enc.SetIndentTables(false)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
