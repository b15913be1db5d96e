package hostile

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

// childEnv makes the test binary an unprivileged client: "cri:<sock>" calls
// Version over gRPC, "monitor:<sock>" sends a monitor Ping, "admin:<sock>"
// asks the admin API. It prints "refused: ..." (no connection), "closed"
// (connected, hung up on without an answer) or "answered: ...".
const childEnv = "POD_SHIM_HOSTILE_CLIENT"

func childMain() int {
	kind, sock, _ := strings.Cut(os.Getenv(childEnv), ":")
	switch kind {
	case "cri":
		conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			fmt.Println("refused:", err)
			return 0
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		v, err := cri.NewRuntimeServiceClient(conn).Version(ctx, &cri.VersionRequest{}, grpc.WaitForReady(false))
		if err != nil {
			fmt.Println("refused:", err)
			return 0
		}
		fmt.Println("answered:", v.RuntimeName)
	case "monitor", "admin":
		c, err := net.DialTimeout("unix", sock, 5*time.Second)
		if err != nil {
			fmt.Println("refused:", err)
			return 0
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		req := `{"method":"Ping"}` + "\n"
		if kind == "admin" {
			req = "POST /images/import HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
		}
		if _, err := io.WriteString(c, req); err != nil {
			fmt.Println("closed")
			return 0
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if line == "" && err != nil {
			fmt.Println("closed")
			return 0
		}
		fmt.Printf("answered: %q\n", line)
	default:
		fmt.Println("bad request", kind)
		return 2
	}
	return 0
}

// asNobody runs this test binary as uid/gid 65534 against target and
// returns its verdict. The binary is copied where nobody may run it.
func asNobody(t *testing.T, target string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "hostile-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "client")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), childEnv+"="+target)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, NoSetGroups: true}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client as nobody (%s): %v: %s", target, err, out)
	}
	return strings.TrimSpace(string(out))
}

func requireHost(t *testing.T) { harness.RequireCrictlHost(t) }

func startDaemon(t *testing.T, o harness.Options) *harness.Daemon {
	t.Helper()
	if o.Tag == "" {
		o.Tag = "hostile"
	}
	if o.Namespace == "" {
		o.Namespace = "hostile"
	}
	if o.Subnet16 == "" {
		o.Subnet16 = "10.247"
	}
	return harness.Start(t, o)
}

// traversable opens every directory from dir up to / for others (x only),
// so that only the sockets' own modes and the monitor's peer check stand
// between an unprivileged process and a socket. The test's temp dirs are
// 0700 and would otherwise make every "refused" below trivially true.
func traversable(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// The daemon started under umask 000 still makes every socket with its
// intended mode: the CRI socket socket_mode (0660), the admin socket 0600,
// each pod's monitor socket 0600 in a 0700 dir. A process running as
// nobody cannot talk to any of them, and the monitor hangs up on it even
// when its modes are widened by hand.
func TestSocketsUnderUmask000(t *testing.T) {
	requireHost(t)
	d := harness.New(t, harness.Options{Tag: "hostile", Namespace: "hostile", Subnet16: "10.247"})
	old := syscall.Umask(0)
	d.Start()
	syscall.Umask(old)
	pod := d.RunPod(d.PodConfig("sockets"))
	podDir := filepath.Join(d.State, "pods", pod)

	want := map[string]fs.FileMode{
		d.Sock:                               0o660,
		filepath.Join(d.State, "admin.sock"): 0o600,
		filepath.Join(podDir, "rpc", "monitor.sock"): 0o600,
	}
	found := map[string]bool{}
	for _, root := range []string{d.Base} {
		filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
			if err != nil || e.Type()&fs.ModeSocket == 0 {
				return nil
			}
			fi, err := os.Lstat(path)
			if err != nil {
				return nil
			}
			found[path] = true
			mode, known := want[path]
			switch {
			case !known:
				t.Errorf("unexpected socket %s (mode %v): add it to this test with the mode it must have", path, fi.Mode())
			case fi.Mode().Perm() != mode:
				t.Errorf("socket %s has mode %04o under umask 000, want %04o", path, fi.Mode().Perm(), mode)
			}
			return nil
		})
	}
	for path := range want {
		if !found[path] {
			t.Errorf("socket %s not found", path)
		}
	}
	if fi, err := os.Stat(filepath.Join(podDir, "rpc")); err != nil {
		t.Fatalf("monitor socket dir: %v", err)
	} else if fi.Mode().Perm() != 0o700 {
		t.Errorf("monitor socket dir has mode %04o, want 0700", fi.Mode().Perm())
	}

	traversable(t, podDir)
	monitorSock := filepath.Join(podDir, "rpc", "monitor.sock")
	adminSock := filepath.Join(d.State, "admin.sock")
	for target, what := range map[string]string{
		"cri:" + d.Sock:          "CRI socket",
		"admin:" + adminSock:     "admin socket",
		"monitor:" + monitorSock: "monitor socket",
	} {
		if got := asNobody(t, target); !strings.HasPrefix(got, "refused:") {
			t.Errorf("nobody reached the %s: %s", what, got)
		}
	}
	// Widened by hand, the monitor's socket lets nobody connect; the
	// monitor's peer check hangs up on it without an answer.
	if err := os.Chmod(filepath.Dir(monitorSock), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(monitorSock, 0o666); err != nil {
		t.Fatal(err)
	}
	if got := asNobody(t, "monitor:"+monitorSock); got != "closed" {
		t.Errorf("nobody on a widened monitor socket: %s; want the monitor to hang up", got)
	}
	// Root is still served: the pod works on.
	if st := d.PodState(pod); st != cri.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pod state %v after the attempts", st)
	}
	if err := d.StopPod(pod); err != nil {
		t.Fatalf("stop pod through its monitor: %v", err)
	}
}

// --listen takes a unix:// URL as the kubelet writes it, and anything that
// is neither a path nor a unix:// URL stops the daemon at start with an
// error naming listen, before it makes anything.
func TestListenEndpoint(t *testing.T) {
	requireHost(t)
	d := harness.New(t, harness.Options{Tag: "hostile", Namespace: "hostile", Subnet16: "10.247"})
	d.ExtraArgs = append(d.ExtraArgs, "--listen", "unix://"+d.Sock)
	// The daemon inherits the cwd: a temp dir, so that a daemon which takes
	// the URL for a relative path makes its "unix:" dir there, not in the
	// source tree.
	t.Chdir(t.TempDir())
	d.Start()
	if fi, err := os.Lstat(d.Sock); err != nil || fi.Mode()&fs.ModeSocket == 0 {
		t.Fatalf("no socket at %s for unix://%s: %v", d.Sock, d.Sock, err)
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", d.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(cwd, "unix:")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a unix: directory appeared in the daemon's cwd %s (err %v)", cwd, err)
	}

	for _, bad := range []string{"tcp://127.0.0.1:10010", "unix://relative/x.sock", "unix:" + d.Sock, "127.0.0.1:10010"} {
		dir := t.TempDir()
		root, state := filepath.Join(dir, "r"), filepath.Join(dir, "s")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, d.Bin, "serve", "--config", d.ConfigFile, "--listen", bad, "--root", root, "--state", state,
			"--cni-conf-dir", d.CNIConf, "--runtime", harness.MustLookPath(t, "runc"))
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "listen") {
			t.Errorf("--listen %q: %v, %q; want exit 1 naming listen", bad, err, out)
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 0 {
			t.Errorf("--listen %q left %d entries in its cwd and dirs (first %s)", bad, len(ents), ents[0].Name())
		}
	}
}

// /metrics never comes with /debug/pprof; pprof answers only on
// --debug-address.
func TestPprofOnlyWhenAsked(t *testing.T) {
	requireHost(t)
	metrics := "127.0.0.1:" + strconv.Itoa(freePort(t))
	debug := "127.0.0.1:" + strconv.Itoa(freePort(t))
	d := startDaemon(t, harness.Options{ExtraArgs: []string{"--metrics-address", metrics}})
	if code := httpStatus(t, "http://"+metrics+"/metrics"); code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	if code := httpStatus(t, "http://"+metrics+"/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("/debug/pprof/ next to /metrics: %d, want 404", code)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	d.ExtraArgs = append(d.ExtraArgs, "--debug-address", debug)
	d.Start()
	if code := httpStatus(t, "http://"+debug+"/debug/pprof/goroutine?debug=1"); code != http.StatusOK {
		t.Fatalf("/debug/pprof on --debug-address: %d", code)
	}
	if code := httpStatus(t, "http://"+metrics+"/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("/debug/pprof/ next to /metrics with --debug-address set: %d, want 404", code)
	}
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	var code int
	harness.Eventually(t, "GET "+url, 30*time.Second, func() error {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		code = resp.StatusCode
		return nil
	})
	return code
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// runcPid is the init pid of a container (or a pod's pause) from runc.
func runcPid(t *testing.T, d *harness.Daemon, id string) int {
	t.Helper()
	out, err := exec.Command(harness.MustLookPath(t, "runc"), "--root", filepath.Join(d.State, "runc"), "state", id).Output()
	if err != nil {
		t.Fatalf("runc state %s: %v", id, err)
	}
	var st struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatal(err)
	}
	return st.Pid
}

func oomScoreAdj(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return v
}
