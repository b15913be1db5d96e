package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/pod-shim/pod-shim/pkg/config"
	"github.com/pod-shim/pod-shim/pkg/container"
	"github.com/pod-shim/pod-shim/pkg/cri"
	"github.com/pod-shim/pod-shim/pkg/events"
	"github.com/pod-shim/pod-shim/pkg/image"
	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/network"
	"github.com/pod-shim/pod-shim/pkg/nri"
	"github.com/pod-shim/pod-shim/pkg/runc"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
	"github.com/pod-shim/pod-shim/pkg/stats"
	"github.com/pod-shim/pod-shim/pkg/store"
	"github.com/pod-shim/pod-shim/pkg/streaming"
	"github.com/pod-shim/pod-shim/pkg/unixsock"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func serve(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := fs.String("config", config.DefaultPath, "config file (TOML)")
	listen := fs.String("listen", "", "CRI unix socket: a path or unix:///absolute/path")
	root := fs.String("root", "", "durable state dir")
	state := fs.String("state", "", "volatile state dir")
	cniConf := fs.String("cni-conf-dir", "", "CNI config dir")
	cniBin := fs.String("cni-bin-dir", "", "CNI plugin dirs, colon separated")
	sandboxImage := fs.String("sandbox-image", "", "pause image")
	pauseBinary := fs.String("pause-binary", "", "built-in pause binary")
	runtimePath := fs.String("runtime", "", "OCI runtime (runc) binary")
	logLevel := fs.String("log-level", "", "debug, info, warn or error")
	cgroupDriver := fs.String("cgroup-driver", "", "cgroupfs or systemd")
	streamAddr := fs.String("stream-address", "", "address of the exec/attach/port-forward server")
	streamPort := fs.Int("stream-port", -1, "port of the exec/attach/port-forward server (0 = any free port)")
	metricsAddr := fs.String("metrics-address", "", "host:port for Prometheus /metrics (empty = off)")
	debugAddr := fs.String("debug-address", "", "host:port for Go's /debug/pprof (empty = off; keep it on loopback)")
	nriSocket := fs.String("nri-socket", "", "host NRI plugins, listening on this socket (enables [nri])")
	var insecure stringList
	fs.Var(&insecure, "insecure-registry", "registry host:port reached over plain HTTP (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" {
			explicit = true
		}
	})
	cfg, err := config.Load(*cfgPath, !explicit)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pod-shim:", err)
		return 1
	}
	override := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	override(&cfg.Listen, *listen)
	override(&cfg.Root, *root)
	override(&cfg.State, *state)
	override(&cfg.CNI.ConfDir, *cniConf)
	override(&cfg.SandboxImage, *sandboxImage)
	override(&cfg.PauseBinary, *pauseBinary)
	override(&cfg.Runtime.Path, *runtimePath)
	override(&cfg.LogLevel, *logLevel)
	override(&cfg.CgroupDriver, *cgroupDriver)
	override(&cfg.StreamServer.Address, *streamAddr)
	override(&cfg.MetricsAddress, *metricsAddr)
	override(&cfg.DebugAddress, *debugAddr)
	if *nriSocket != "" {
		cfg.NRI.Enable = true
		cfg.NRI.SocketPath = *nriSocket
	}
	if *streamPort >= 0 {
		cfg.StreamServer.Port = *streamPort
	}
	if *cniBin != "" {
		cfg.CNI.BinDirs = filepath.SplitList(*cniBin)
	}
	cfg.Registry.Insecure = append(cfg.Registry.Insecure, insecure...)
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "pod-shim:", err)
		return 1
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "pod-shim: log_level:", err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := run(cfg, log); err != nil {
		log.Error("pod-shim stopped", "error", err)
		return 1
	}
	return 0
}

func run(cfg config.Config, log *slog.Logger) error {
	runtimeBin, err := exec.LookPath(cfg.Runtime.Path)
	if err != nil {
		return fmt.Errorf("OCI runtime: %w", err)
	}
	runtimeRoot := cfg.Runtime.Root
	if runtimeRoot == "" {
		runtimeRoot = filepath.Join(cfg.State, "runc")
	}
	// Each pod's monitor listens under <state>/pods/<64-hex id>/, and a
	// unix socket path is at most 107 bytes: refuse a state dir that would
	// make every RunPodSandbox fail later with an obscure bind error.
	if n := len(monitor.SocketPath(filepath.Join(cfg.State, "pods", strings.Repeat("0", 64)))); n > 107 {
		return fmt.Errorf("state dir %q is too long: pod monitor sockets would be %d bytes, the limit is 107; use a path of at most %d characters", cfg.State, n, len(cfg.State)-(n-107))
	}
	listenPath, err := cfg.ListenPath()
	if err != nil {
		return err
	}
	socketPerm, err := cfg.SocketPerm()
	if err != nil {
		return err
	}
	for _, d := range []string{cfg.Root, cfg.State, filepath.Dir(listenPath)} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return err
		}
	}
	db, err := store.Open(filepath.Join(cfg.Root, "meta.db"), 5*time.Second)
	if err != nil {
		return err
	}
	defer db.Close()

	registries := map[string]image.RegistryHost{}
	for _, h := range cfg.Registry.Insecure {
		r := registries[h]
		r.Insecure = true
		registries[h] = r
	}
	for h, mirrors := range cfg.Registry.Mirrors {
		r := registries[h]
		r.Mirrors = mirrors
		registries[h] = r
	}
	mx := newMetrics(cfg.MetricsAddress)
	images, err := image.New(image.Options{Root: filepath.Join(cfg.Root, "image"), DB: db, Registries: registries, Logger: log, ObservePull: mx.ObservePull,
		Limits: image.Limits{MaxManifestBytes: cfg.Registry.MaxManifestBytes, MaxConfigBytes: cfg.Registry.MaxConfigBytes, MaxLayers: cfg.Registry.MaxLayers, MaxZstdWindow: cfg.Registry.MaxZstdWindowBytes, MaxPullBytes: cfg.Registry.MaxPullBytes}})
	if err != nil {
		return err
	}
	// The kubelet's image GC must never remove the pause image.
	if err := images.SetPinned(cfg.SandboxImage, true); err != nil && !errors.Is(err, image.ErrNotFound) {
		log.Warn("pin sandbox image", "image", cfg.SandboxImage, "error", err)
	}
	net, err := network.New(network.Options{
		ConfDir: cfg.CNI.ConfDir, BinDirs: cfg.CNI.BinDirs,
		CacheDir: filepath.Join(cfg.Root, "cni"), Timeout: cfg.CNI.Timeout.Duration, Logger: log,
		ObserveCNI: mx.ObserveCNI,
	})
	if err != nil {
		return err
	}
	monitorExe, err := monitorExecutable()
	if err != nil {
		return err
	}
	log.Info("pod monitor binary", "path", monitorExe)
	handlers := runtimeHandlers(cfg, runtimeBin, runtimeRoot)
	// Each handler's features (user namespaces, rro mounts) come from what its
	// binary reports, read once here so Status and RunPodSandbox never guess.
	for name, f := range handlers.Probe(context.Background()) {
		log.Info("runtime handler", "name", name, "user_namespaces", f.UserNamespaces, "recursive_read_only_mounts", f.RecursiveReadOnlyMounts)
	}
	// Interfaces stay nil when NRI is off: the managers then skip every hook.
	var (
		nriHost  *nri.NRI
		podHooks sandbox.Hooks
		ctrHooks container.Hooks
	)
	if cfg.NRI.Enable {
		nriHost, err = nri.New(nri.Options{
			RuntimeName: "pod-shim", RuntimeVersion: cri.RuntimeVersion,
			SocketPath: cfg.NRI.SocketPath, PluginPath: cfg.NRI.PluginPath, PluginConfigPath: cfg.NRI.PluginConfigPath,
			RegistrationTimeout: cfg.NRI.RegistrationTimeout.Duration, RequestTimeout: cfg.NRI.RequestTimeout.Duration,
			DisableConnections: cfg.NRI.DisableConnections, Logger: log,
		})
		if err != nil {
			return err
		}
		podHooks, ctrHooks = nriHost, nriHost
	}
	sandboxes, err := sandbox.New(sandbox.Options{
		DB: db, Network: net, Images: images, StateDir: cfg.State,
		SandboxImage: cfg.SandboxImage, PauseBinary: cfg.PauseBinary,
		Runtime: runtimeBin, RuntimeRoot: runtimeRoot, CgroupDriver: cfg.CgroupDriver, Executable: monitorExe, Logger: log,
		MaxLogLine: cfg.MaxLogLine,
		Direct:     runc.New(runtimeBin, runtimeRoot), Handlers: handlers, Hooks: podHooks,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := sandboxes.Recover(ctx); err != nil {
		return fmt.Errorf("recover sandboxes: %w", err)
	}
	containers, err := container.New(container.Options{
		DB: db, Sandboxes: sandboxes, Images: images, StateDir: cfg.State,
		CgroupDriver: cfg.CgroupDriver, Runtime: runc.New(runtimeBin, runtimeRoot), Logger: log,
		Handlers: handlers, CDISpecDirs: cfg.CDISpecDirs, OnOOMKill: mx.OOMKill,
		Hooks: ctrHooks,
	})
	if err != nil {
		return err
	}
	if err := containers.Recover(ctx); err != nil {
		return fmt.Errorf("recover containers: %w", err)
	}
	if nriHost != nil {
		if err := nriHost.Start(sandboxes, containers); err != nil {
			return err
		}
		defer nriHost.Stop()
		log.Info("NRI enabled", "socket", cfg.NRI.SocketPath, "plugin_path", cfg.NRI.PluginPath)
	}

	cgroups, err := stats.Detect("/sys/fs/cgroup")
	if err != nil {
		return fmt.Errorf("cgroups for stats: %w", err)
	}
	streamTLS, err := streamTLSConfig(cfg.StreamServer)
	if err != nil {
		return err
	}
	streams, err := streaming.Start(streaming.Options{
		Address: cfg.StreamServer.Address, Port: cfg.StreamServer.Port, TLS: streamTLS,
		IdleTimeout: cfg.StreamServer.IdleTimeout.Duration,
		Containers:  containers, Sandboxes: sandboxes, Logger: log,
	})
	if err != nil {
		return err
	}
	defer streams.Close()
	log.Info("stream server listening", "address", streams.Addr())
	broker := events.New()
	metricsOpts, stopMetrics, err := startMetrics(mx, cfg.MetricsAddress, sandboxes, containers, broker, log)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer stopMetrics()
	stopDebug, err := startDebug(cfg.DebugAddress, log)
	if err != nil {
		return fmt.Errorf("debug server: %w", err)
	}
	defer stopDebug()
	srv := cri.New(cri.Options{
		Sandboxes: sandboxes, Containers: containers, Images: images, Network: net,
		CgroupDriver: cfg.CgroupDriver, RuntimePath: runtimeBin, PullTimeout: cfg.ImagePullTimeout.Duration, Logger: log,
		Stats: stats.NewCollector(cgroups), LayerRoot: filepath.Join(cfg.Root, "image", "containers"),
		Streamer: streams, Events: broker,
	})
	go srv.RunNodeServices(ctx)
	g := grpc.NewServer(append(metricsOpts, srv.Interceptors()...)...)
	srv.Register(g)

	lis, err := unixsock.Listen(listenPath, socketPerm)
	if err != nil {
		return err
	}

	admin, err := startAdmin(filepath.Join(cfg.State, adminSocket), images, log)
	if err != nil {
		return err
	}
	defer admin.Close()

	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	log.Info("pod-shim serving", "socket", listenPath, "socket_mode", fmt.Sprintf("%04o", socketPerm), "root", cfg.Root, "state", cfg.State, "version", cri.RuntimeVersion)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Pods keep running: their monitors are in their own sessions. Only the
	// API goes away.
	log.Info("shutting down; pods keep running")
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		g.Stop()
	}
	return nil
}

// httpServer is the small admin API on a second unix socket.
type httpServer struct {
	srv *http.Server
}

func (h *httpServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return h.srv.Shutdown(ctx)
}

// monitorExecutable prefers pod-shim-monitor next to this binary: linked
// alone it costs each pod about 2 MiB less than re-executing pod-shim,
// which also works (`pod-shim monitor`) when the small binary is absent.
func monitorExecutable() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	small := filepath.Join(filepath.Dir(self), "pod-shim-monitor")
	if fi, err := os.Stat(small); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return small, nil
	}
	return self, nil
}
