package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Options are what differs between the suites' daemons.
type Options struct {
	// Tag names the test's things: temp dir "ps<Tag[0]>…", bridge
	// "ps<Tag[0]><6 hex>", CNI network "ps<Tag>-<6 hex>". Required.
	Tag string
	// Subnet16 is the /16 the pod subnet X.Y.Z.0/24 is picked from, e.g. "10.250";
	// suites running at the same time use different ones.
	Subnet16 string
	// Namespace and Labels go into the pod configs PodConfig and PodConfigFile make.
	Namespace string
	Labels    map[string]string

	// Config is the daemon's TOML config (passed with --config; empty: defaults).
	Config string
	// ExtraArgs are added to `pod-shim serve` (stream, metrics, registry flags).
	ExtraArgs []string
	// Env is added to the daemon's environment at every start (e.g. failpoints).
	Env []string

	// NetConf is the plugin chain of the conflist written before the start;
	// nil: bridge + portmap. Returning nil writes none (the test writes its own).
	NetConf func(d *Daemon) []map[string]any
	// FakePlugins adds a bin dir (FakeBin) searched before CNIBinDir, for
	// plugins the test writes with FakePlugin.
	FakePlugins bool

	// Crictl: readiness is also "crictl version answers", as for a user.
	Crictl bool
	// LogCopyDir, if set, receives the daemon's whole log at cleanup, pass or fail.
	LogCopyDir string
	// Cleanup runs during the cleanup after the daemon, its pods and the
	// network are gone and before the dirs are removed (e.g. iptables rules).
	Cleanup func(d *Daemon)
	// Leftovers adds the suite's own checks to Leftovers.
	Leftovers func(d *Daemon) []string
}

// Daemon is one pod-shim serve process with private dirs, CNI config and bridge.
type Daemon struct {
	T    testing.TB
	Opts Options
	Bin  string

	Base       string // everything the test writes lives under here
	Root       string
	State      string
	Sock       string
	CNIConf    string
	FakeBin    string // "" unless Options.FakePlugins
	IPAMDir    string
	LogDir     string
	LogFile    string
	ConfigFile string
	CrictlYAML string

	Bridge  string
	NetName string
	Subnet  *net.IPNet

	// ExtraArgs and Env start as Options' and may be changed before a (re)start.
	ExtraArgs []string
	Env       []string

	// RS and IS talk to the daemon over one connection that reconnects
	// across restarts (with a short backoff).
	RS   cri.RuntimeServiceClient
	IS   cri.ImageServiceClient
	conn *grpc.ClientConn

	mu        sync.Mutex
	cmd       *exec.Cmd
	exited    chan struct{}
	netnsInos map[uint64]bool // network namespaces of the test's pods, for the leftover checks
	podIDs    map[string]bool
}

// Start is New followed by Start: a daemon that answers.
func Start(t testing.TB, o Options) *Daemon {
	t.Helper()
	d := New(t, o)
	d.Start()
	return d
}

// New makes the daemon's private dirs, config, crictl.yaml and CNI conflist
// for a new bridge; Start runs it. Everything is undone in t.Cleanup, also
// when the test fails.
func New(t testing.TB, o Options) *Daemon {
	t.Helper()
	if o.Tag == "" {
		t.Fatal("harness: Options.Tag is required")
	}
	if o.Subnet16 == "" {
		o.Subnet16 = "10.250"
	}
	bin := Binary(t)
	// Short base path: unix socket paths (the daemon's and each pod monitor's) are limited to 108 bytes.
	base, err := os.MkdirTemp("/tmp", "ps"+o.Tag[:1])
	if err != nil {
		t.Fatal(err)
	}
	suffix := RandHex(3)
	d := &Daemon{
		T:          t,
		Opts:       o,
		Bin:        bin,
		Base:       base,
		Root:       filepath.Join(base, "r"),
		State:      filepath.Join(base, "s"),
		Sock:       filepath.Join(base, "cri.sock"),
		CNIConf:    filepath.Join(base, "cni"),
		IPAMDir:    filepath.Join(base, "ipam"),
		LogDir:     filepath.Join(base, "logs"),
		LogFile:    filepath.Join(base, "daemon.log"),
		ConfigFile: filepath.Join(base, "config.toml"),
		CrictlYAML: filepath.Join(base, "crictl.yaml"),
		Bridge:     "ps" + o.Tag[:1] + suffix, // 9 bytes, under IFNAMSIZ
		NetName:    "ps" + o.Tag + "-" + suffix,
		ExtraArgs:  append([]string(nil), o.ExtraArgs...),
		Env:        append([]string(nil), o.Env...),
		netnsInos:  map[uint64]bool{},
		podIDs:     map[string]bool{},
	}
	if o.FakePlugins {
		d.FakeBin = filepath.Join(base, "bin")
	}
	t.Cleanup(d.cleanup)
	for _, dir := range []string{d.CNIConf, d.IPAMDir, d.LogDir, d.FakeBin} {
		if dir == "" {
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// An explicit config, even empty, keeps the host's /etc/pod-shim/config.toml out.
	d.SetConfig(o.Config)
	// crictl reads /etc/crictl.yaml unless told otherwise: keep the host's out of it.
	if err := os.WriteFile(d.CrictlYAML, []byte("runtime-endpoint: unix://"+d.Sock+"\nimage-endpoint: unix://"+d.Sock+"\ntimeout: 30\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.Subnet = FreeSubnet(t, o.Subnet16)
	plugins := []map[string]any{d.BridgePlugin(), PortmapPlugin(false)}
	if o.NetConf != nil {
		plugins = o.NetConf(d)
	}
	if plugins != nil {
		d.WriteNetConf(plugins...)
	}
	return d
}

// SetConfig writes the daemon's TOML config (read at the next start).
func (d *Daemon) SetConfig(toml string) {
	d.T.Helper()
	if err := os.WriteFile(d.ConfigFile, []byte(toml), 0o644); err != nil {
		d.T.Fatal(err)
	}
}

// FreeSubnet picks <net16>.X.0/24 with X random and not routed on this host.
func FreeSubnet(t testing.TB, net16 string) *net.IPNet {
	t.Helper()
	out, _ := exec.Command("ip", "-4", "route", "show").Output()
	for range 50 {
		n, err := rand.Int(rand.Reader, big.NewInt(254))
		if err != nil {
			t.Fatal(err)
		}
		prefix := fmt.Sprintf("%s.%d.", net16, n.Int64()+1)
		if bytes.Contains(out, []byte(prefix)) {
			continue
		}
		_, subnet, _ := net.ParseCIDR(prefix + "0/24")
		return subnet
	}
	t.Fatalf("no free %s.X.0/24 subnet", net16)
	return nil
}

// Args are the daemon's command line.
func (d *Daemon) Args() []string {
	binDir := CNIBinDir
	if d.FakeBin != "" {
		binDir = d.FakeBin + ":" + CNIBinDir
	}
	return append([]string{"serve",
		"--config", d.ConfigFile,
		"--listen", d.Sock,
		"--root", d.Root,
		"--state", d.State,
		"--cni-conf-dir", d.CNIConf,
		"--cni-bin-dir", binDir,
		"--pause-binary", filepath.Join(filepath.Dir(d.Bin), "pod-shim-pause"),
		"--runtime", MustLookPath(d.T, "runc"),
		"--log-level", "debug",
	}, d.ExtraArgs...)
}

// Spawn starts a daemon process with d.Env and extraEnv, without waiting
// for it to answer and without making it the Daemon's process.
func (d *Daemon) Spawn(extraEnv ...string) (*exec.Cmd, chan struct{}) {
	t := d.T
	t.Helper()
	env := append(append([]string(nil), d.Env...), extraEnv...)
	logf, err := os.OpenFile(d.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args := d.Args()
	fmt.Fprintf(logf, "==== %s pod-shim %v %s\n", time.Now().Format(time.RFC3339Nano), env, strings.Join(args, " "))
	cmd := exec.Command(d.Bin, args...)
	// A -race build (hack/test.sh's) writes each data race report of the
	// daemon and of the monitors it starts (they inherit its environment)
	// to race.<pid> under Base; the cleanup fails the test on any.
	cmd.Env = append(append(os.Environ(), "GORACE=log_path="+d.raceLogPrefix()), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group, so the test's terminal signals don't reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	return cmd, exited
}

// Start runs the daemon (again, with the same dirs; extraEnv such as
// failpoints for this start only) and waits until it answers Version (and
// crictl version with Options.Crictl). It returns how long that took.
func (d *Daemon) Start(extraEnv ...string) time.Duration {
	t := d.T
	t.Helper()
	begin := time.Now()
	cmd, exited := d.Spawn(extraEnv...)
	d.mu.Lock()
	d.cmd, d.exited = cmd, exited
	d.mu.Unlock()
	if d.conn == nil {
		// Short reconnect backoff: grpc's default (1 s and growing) would
		// hide how soon a restarted daemon serves again.
		conn, err := grpc.NewClient("unix://"+d.Sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.2, Jitter: 0.1, MaxDelay: 200 * time.Millisecond},
				MinConnectTimeout: 2 * time.Second,
			}))
		if err != nil {
			t.Fatal(err)
		}
		d.conn = conn
		d.RS = cri.NewRuntimeServiceClient(conn)
		d.IS = cri.NewImageServiceClient(conn)
	}
	// The bound only stops a broken daemon from hanging the suite.
	const bound = 90 * time.Second
	deadline := time.Now().Add(bound)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("pod-shim serve exited during start-up (%v); log:\n%s", cmd.ProcessState, d.LogTail())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, lastErr = d.RS.Version(ctx, &cri.VersionRequest{})
		cancel()
		if lastErr == nil && d.Opts.Crictl {
			_, lastErr = d.CrictlErr("version")
		}
		if lastErr == nil {
			return time.Since(begin)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("pod-shim serve did not answer within %v: %v; log:\n%s", bound, lastErr, d.LogTail())
	return 0
}

// ErrStopTimeout is Stop's error when the daemon outlived SIGTERM by 30 s.
var ErrStopTimeout = errors.New("pod-shim serve did not exit within 30s of SIGTERM; killed")

// Stop sends SIGTERM and waits for the daemon to exit (SIGKILL after 30s).
// It is an error if it had to be killed or exited unsuccessfully.
func (d *Daemon) Stop() error {
	d.mu.Lock()
	cmd, exited := d.cmd, d.exited
	d.cmd = nil
	d.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
		return ErrStopTimeout
	}
	if st := cmd.ProcessState; st != nil && !st.Success() {
		return fmt.Errorf("pod-shim serve exited with %v after SIGTERM", st)
	}
	return nil
}

// Kill SIGKILLs the daemon and waits for it to be gone, as a crash would.
func (d *Daemon) Kill() {
	d.mu.Lock()
	cmd, exited := d.cmd, d.exited
	d.cmd = nil
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-exited
}

// Restart stops the daemon, with SIGTERM (Stop, an error fails the test)
// or SIGKILL (Kill), and starts it again with extraEnv.
func (d *Daemon) Restart(sig syscall.Signal, extraEnv ...string) time.Duration {
	d.T.Helper()
	if sig == syscall.SIGKILL {
		d.Kill()
	} else if err := d.Stop(); err != nil {
		d.T.Error(err)
	}
	return d.Start(extraEnv...)
}

// WaitExit waits up to bound for the daemon to exit by itself (e.g. at a
// failpoint) and returns its exit code; it fails the test if it did not.
func (d *Daemon) WaitExit(bound time.Duration, what string) int {
	d.T.Helper()
	d.mu.Lock()
	cmd, exited := d.cmd, d.exited
	d.mu.Unlock()
	if cmd == nil {
		d.T.Fatalf("%s: no daemon running", what)
	}
	select {
	case <-exited:
	case <-time.After(bound):
		d.T.Fatalf("daemon did not exit %s within %v; log:\n%s", what, bound, d.LogTail())
	}
	d.mu.Lock()
	d.cmd = nil
	d.mu.Unlock()
	return cmd.ProcessState.ExitCode()
}

// Running says whether the daemon process is the Daemon's (started, not stopped).
func (d *Daemon) Running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmd != nil
}

// Pid is the daemon's process id, 0 when it is not running.
func (d *Daemon) Pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// LogTail is the end of the daemon's log.
func (d *Daemon) LogTail() string {
	b, _ := os.ReadFile(d.LogFile)
	const max = 12000
	if len(b) > max {
		b = append([]byte("...\n"), b[len(b)-max:]...)
	}
	return string(b)
}

// LastStartup is how long the last daemon start took from its spawn to its
// "serving" log line: recovery included, the client's reconnect not.
func (d *Daemon) LastStartup() time.Duration {
	b, _ := os.ReadFile(d.LogFile)
	var spawned, serving time.Time
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "==== "); ok {
			spawned, _ = time.Parse(time.RFC3339Nano, strings.Fields(rest)[0])
			serving = time.Time{}
		} else if strings.Contains(l, `msg="pod-shim serving"`) && serving.IsZero() {
			if ts, ok := strings.CutPrefix(strings.Fields(l)[0], "time="); ok {
				serving, _ = time.Parse(time.RFC3339Nano, ts)
			}
		}
	}
	if spawned.IsZero() || serving.IsZero() {
		return 0
	}
	return serving.Sub(spawned)
}

func (d *Daemon) raceLogPrefix() string { return filepath.Join(d.Base, "race") }

// RaceReports are the data race reports a -race build of the daemon or its
// monitors wrote so far ("" when none).
func (d *Daemon) RaceReports() string {
	files, _ := filepath.Glob(d.raceLogPrefix() + ".*")
	var out strings.Builder
	for _, f := range files {
		b, _ := os.ReadFile(f)
		fmt.Fprintf(&out, "==== %s\n%s\n", f, b)
	}
	return out.String()
}
