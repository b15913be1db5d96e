package monitor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/pod-shim/pod-shim/pkg/runc"
)

const runcBinary = "/usr/sbin/runc"

// The test binary doubles as the monitor executable: Start re-executes it
// with `monitor ...`, exactly as the daemon re-executes pod-shim.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "monitor" {
		os.Exit(Main(os.Args[2:]))
	}
	if sock := os.Getenv(dialEnv); sock != "" {
		os.Exit(dialAsChild(sock))
	}
	code := m.Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// shared is a read-only rootfs (busybox with applet links, and pause) that
// every test's containers use; building it once keeps the tests fast.
var shared struct {
	once   sync.Once
	dir    string
	rootfs string
	err    error
}

func sharedRootfs(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "monitor-rootfs-")
		if shared.err != nil {
			return
		}
		shared.rootfs, shared.err = buildRootfs(shared.dir)
	})
	if shared.err != nil {
		t.Fatalf("build rootfs: %v", shared.err)
	}
	return shared.rootfs
}

func buildRootfs(dir string) (string, error) {
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "tmp", "sys"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return "", err
		}
	}
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755); err != nil {
		return "", err
	}
	for _, applet := range []string{"sh", "echo", "sleep", "cat", "printf", "dd", "tr", "ps", "true", "seq", "yes", "head"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil {
			return "", err
		}
	}
	src, err := filepath.Abs("../../cmd/pod-shim-pause/pause.c")
	if err != nil {
		return "", err
	}
	out, err := exec.Command("gcc", "-Os", "-static", "-o", filepath.Join(rootfs, "pause"), src).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build pause: %v: %s", err, out)
	}
	return rootfs, nil
}

func requireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test with real runc: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs real runc containers")
	}
	if _, err := os.Stat(runcBinary); err != nil {
		t.Skipf("needs %s: %v", runcBinary, err)
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("needs gcc to build the pause binary")
	}
}

// testPod is one pod's worth of test fixtures: a state dir served by a real
// monitor process, its own runc root and its own cgroup parent.
type testPod struct {
	t        testing.TB
	dir      string
	runcRoot string
	bundles  string
	cgroup   string // cgroup parent, unique per test
	rootfs   string
	client   *Client
	rt       *runc.Runtime
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newID() string { return randomHex(32) }

// newPod starts a monitor for a fresh pod and registers cleanup that leaves
// no process, runc container, cgroup or file behind, even on failure.
func newPod(t testing.TB) *testPod {
	t.Helper()
	return newPodWith(t, nil)
}

// newPodWith is newPod with a hook to adjust the monitor's StartOptions.
func newPodWith(t testing.TB, adjust func(*StartOptions)) *testPod {
	t.Helper()
	requireRoot(t)
	p := &testPod{
		t:        t,
		dir:      t.TempDir(),
		runcRoot: t.TempDir(),
		bundles:  t.TempDir(),
		cgroup:   "pod-shim-test-" + randomHex(6),
		rootfs:   sharedRootfs(t),
	}
	p.rt = runc.New(runcBinary, p.runcRoot)
	t.Cleanup(p.cleanupRuntime) // runs last: after the monitor is gone
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts := StartOptions{
		SandboxID:   "sandbox-" + randomHex(4),
		Dir:         p.dir,
		Runtime:     runcBinary,
		RuntimeRoot: p.runcRoot,
		Executable:  exe,
	}
	if adjust != nil {
		adjust(&opts)
	}
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("start monitor: %v", err)
	}
	p.client = c
	pid := c.Pid()
	t.Cleanup(func() { p.stopMonitor(pid) })
	return p
}

// stopMonitor shuts the monitor down through a fresh connection (the test's
// client may be closed) and kills it if it does not go.
func (p *testPod) stopMonitor(pid int) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if c, err := Connect(ctx, p.dir); err == nil {
		if err := c.Shutdown(ctx); err != nil {
			p.t.Logf("cleanup: shutdown monitor: %v", err)
		}
	}
	if !waitGone(pid, 5*time.Second) {
		syscall.Kill(pid, syscall.SIGKILL)
		waitGone(pid, 5*time.Second)
	}
}

func (p *testPod) cleanupRuntime() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	states, err := p.rt.List(ctx)
	if err != nil {
		p.t.Logf("cleanup: runc list: %v", err)
	}
	for _, s := range states {
		if err := p.rt.Delete(ctx, s.ID, true); err != nil {
			p.t.Logf("cleanup: runc delete %s: %v", s.ID, err)
		}
	}
	removeCgroups(p.t, p.cgroup)
}

// removeCgroups removes the test's cgroup parent in every hierarchy; runc
// deletes the containers' own cgroups but not the parents it created.
func removeCgroups(t testing.TB, parent string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	for _, d := range dirs {
		var all []string
		filepath.WalkDir(d, func(path string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				all = append(all, path)
			}
			return nil
		})
		for i := len(all) - 1; i >= 0; i-- {
			if err := os.Remove(all[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Logf("cleanup: remove cgroup %s: %v", all[i], err)
			}
		}
	}
}

// waitGone waits until pid no longer exists (or is a zombie being reaped).
func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return !alive(pid)
}

func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// Field 3 is the state; Z means exited and waiting to be reaped.
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// bundle writes a bundle for a container running args in the shared rootfs.
func (p *testPod) bundle(id string, args ...string) string {
	p.t.Helper()
	return p.bundleWith(id, nil, args...)
}

// bundleWith is bundle with a hook to adjust the spec.
func (p *testPod) bundleWith(id string, adjust func(*specs.Spec), args ...string) string {
	p.t.Helper()
	dir := filepath.Join(p.bundles, id[:12])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatal(err)
	}
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID"}
	spec := specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: p.rootfs, Readonly: true},
		Process: &specs.Process{
			Args:            args,
			Env:             []string{"PATH=/bin"},
			Cwd:             "/",
			NoNewPrivileges: true,
			Capabilities:    &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
		},
		Hostname: "monitor-test",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "size=65536k"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/" + p.cgroup + "/" + id[:12],
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace},
			},
		},
	}
	if adjust != nil {
		adjust(&spec)
	}
	data, err := json.Marshal(spec)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		p.t.Fatal(err)
	}
	return dir
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// run creates a container through the monitor; start says whether to start
// it in the same runc spawn.
func (p *testPod) run(id, logPath string, start bool, args ...string) int {
	p.t.Helper()
	pid, err := p.client.Create(ctxT(p.t, 30*time.Second), CreateRequest{
		ID: id, Bundle: p.bundle(id, args...), LogPath: logPath, Start: start,
	})
	if err != nil {
		p.t.Fatalf("create %s: %v", args, err)
	}
	return pid
}

type logRecord struct {
	time    time.Time
	stream  string
	partial bool
	text    string
}

// readLog parses a CRI log file strictly: every line must be well formed.
func readLog(t *testing.T, path string) []logRecord {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	var recs []logRecord
	if len(data) == 0 {
		return nil
	}
	if data[len(data)-1] != '\n' {
		t.Fatalf("log does not end with a newline: %q", tail(data))
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		parts := strings.SplitN(line, " ", 4)
		if len(parts) != 4 {
			t.Fatalf("malformed log line %q", line)
		}
		ts, err := time.Parse(time.RFC3339Nano, parts[0])
		if err != nil || !strings.HasSuffix(parts[0], "Z") {
			t.Fatalf("bad timestamp in %q: %v", line, err)
		}
		if parts[1] != "stdout" && parts[1] != "stderr" {
			t.Fatalf("bad stream in %q", line)
		}
		if parts[2] != "F" && parts[2] != "P" {
			t.Fatalf("bad tag in %q", line)
		}
		recs = append(recs, logRecord{time: ts, stream: parts[1], partial: parts[2] == "P", text: parts[3]})
	}
	return recs
}

func tail(b []byte) []byte {
	if len(b) > 80 {
		return b[len(b)-80:]
	}
	return b
}

// lines joins partial records and returns the full lines of one stream.
func lines(recs []logRecord, stream string) []string {
	var out []string
	var cur strings.Builder
	for _, r := range recs {
		if r.stream != stream {
			continue
		}
		cur.WriteString(r.text)
		if !r.partial {
			out = append(out, cur.String())
			cur.Reset()
		}
	}
	// An unterminated last line ends in a P record, as the kubelet reads it.
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// memory reads a process's RSS, PSS and anonymous (private, unshareable)
// memory in KiB from smaps_rollup.
func memory(t *testing.T, pid int) (rss, pss, anon int) {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		t.Fatalf("read smaps_rollup: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "Rss:":
			rss = n
		case "Pss:":
			pss = n
		case "Anonymous:":
			anon = n
		}
	}
	return rss, pss, anon
}
