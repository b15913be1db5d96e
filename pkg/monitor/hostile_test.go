package monitor

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dialEnv makes the test binary a client that dials the socket it names,
// sends a Ping and prints what happened: "refused: ...", "closed" (the
// monitor hung up without answering) or "answered: ...".
const dialEnv = "POD_SHIM_MONITOR_TEST_DIAL"

func dialAsChild(sock string) int {
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		fmt.Println("refused:", err)
		return 0
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := json.NewEncoder(conn).Encode(request{Method: "Ping"}); err != nil {
		fmt.Println("closed")
		return 0
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if line == "" && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		fmt.Println("closed")
		return 0
	}
	fmt.Printf("answered: %q %v\n", line, err)
	return 0
}

// runAsNobody runs this test binary as uid/gid 65534 dialing sock, and
// returns its verdict. The binary is copied where nobody may execute it.
func runAsNobody(t *testing.T, sock string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "monitor-nobody-")
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
	bin := filepath.Join(dir, "dial")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), dialEnv+"="+sock)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, NoSetGroups: true}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client as nobody: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// The monitor's socket is 0600 in a 0700 dir even when the daemon runs with
// umask 000, and a non-root process cannot talk to it: not through the
// modes, and not even when someone widened them by hand, because the
// monitor checks the peer's credentials on every connection.
func TestSocketIsRootOnly(t *testing.T) {
	requireRoot(t)
	old := syscall.Umask(0)
	p := newPod(t)
	syscall.Umask(old)

	sock := SocketPath(p.dir)
	sfi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	dfi, err := os.Lstat(filepath.Dir(sock))
	if err != nil {
		t.Fatal(err)
	}
	if sfi.Mode()&os.ModeSocket == 0 || sfi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600 socket", sfi.Mode())
	}
	if !dfi.IsDir() || dfi.Mode().Perm() != 0o700 {
		t.Errorf("socket dir mode %v, want 0700 dir", dfi.Mode())
	}

	if got := runAsNobody(t, sock); !strings.HasPrefix(got, "refused:") {
		t.Errorf("nobody through the modes: %s; want refused", got)
	}
	// Widen the modes by hand (the test's temp dirs too): the kernel now
	// lets nobody connect, and only the peer check stands between it and
	// the monitor.
	for _, d := range []string{filepath.Dir(p.dir), p.dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Dir(sock), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	if got := runAsNobody(t, sock); got != "closed" {
		t.Errorf("nobody with widened modes: %s; want the monitor to close without answering", got)
	}
	// Root still gets answers: the check refuses only others.
	if _, err := Connect(ctxT(t, 10*time.Second), p.dir); err != nil {
		t.Fatalf("root refused: %v", err)
	}
	logData, _ := os.ReadFile(filepath.Join(p.dir, LogName))
	if !strings.Contains(string(logData), "refused a connection from a non-root peer") || !strings.Contains(string(logData), "uid=65534") {
		t.Errorf("monitor.log does not record the refused peer:\n%s", logData)
	}
}

// max_container_log_line_size reaches the monitor: lines are split into P
// records of exactly that size.
func TestMaxLogLineFromOptions(t *testing.T) {
	const max = 4096
	p := newPodWith(t, func(o *StartOptions) { o.MaxLogLine = max })
	id := newID()
	logPath := filepath.Join(t.TempDir(), "c.log")
	p.run(id, logPath, true, "sh", "-c", "dd if=/dev/zero bs=1024 count=10 2>/dev/null | tr '\\0' a; echo; echo after")
	if _, err := p.client.Wait(ctxT(t, 30*time.Second), id); err != nil {
		t.Fatal(err)
	}
	recs := readLog(t, logPath)
	var partials int
	for _, r := range recs {
		if r.partial {
			partials++
			if len(r.text) != max {
				t.Errorf("partial piece of %d bytes, want %d", len(r.text), max)
			}
		}
	}
	if partials != 10240/max {
		t.Errorf("%d partial pieces, want %d", partials, 10240/max)
	}
	got := lines(recs, "stdout")
	if len(got) != 2 || got[0] != strings.Repeat("a", 10240) || got[1] != "after" {
		t.Fatalf("joined lines: %d lines", len(got))
	}
}

func TestMaxLogLineOutOfRangeRefused(t *testing.T) {
	requireRoot(t)
	for _, n := range []int{100, 2 << 20} {
		_, err := Start(ctxT(t, 10*time.Second), StartOptions{
			SandboxID: "s", Dir: t.TempDir(), Runtime: runcBinary, RuntimeRoot: t.TempDir(), MaxLogLine: n,
			Executable: mustExecutable(t),
		})
		if err == nil || !strings.Contains(err.Error(), "--max-log-line") {
			t.Errorf("MaxLogLine %d: err = %v, want a --max-log-line error", n, err)
		}
	}
}

func mustExecutable(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// A symlink (or anything but a regular file) planted at a container's log
// path is never written through: the open fails, the target is untouched.
func TestLogFileSymlinkNotFollowed(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "host-file")
	if err := os.WriteFile(target, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "c.log")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if lw, err := openLog(link); err == nil {
		lw.close()
		t.Fatal("opened a log through a symlink")
	} else if !errors.Is(err, syscall.ELOOP) {
		t.Errorf("err = %v, want ELOOP", err)
	}
	// Reopen after rotation meets the same check.
	real := filepath.Join(dir, "r.log")
	lw, err := openLog(real)
	if err != nil {
		t.Fatal(err)
	}
	defer lw.close()
	if err := os.Rename(real, real+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, real); err != nil {
		t.Fatal(err)
	}
	if err := lw.reopen(); err == nil {
		t.Fatal("reopened a log through a symlink")
	}
	if b, _ := os.ReadFile(target); string(b) != "precious\n" {
		t.Fatalf("symlink target changed: %q", b)
	}

	// A FIFO must not block the open, and is refused.
	fifo := filepath.Join(dir, "f.log")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		lw, err := openLog(fifo)
		if err == nil {
			lw.close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a FIFO was accepted as a log file")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("opening a FIFO log path blocked")
	}
}

// Through the monitor: Create with a symlinked log path fails and writes
// nothing through it.
func TestCreateWithSymlinkedLogFails(t *testing.T) {
	p := newPod(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "host-file")
	if err := os.WriteFile(target, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "c.log")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	id := newID()
	_, err := p.client.Create(ctxT(t, 30*time.Second), CreateRequest{ID: id, Bundle: p.bundle(id, "echo", "hi"), LogPath: link, Start: true})
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("Create err = %v, want a symbolic-link refusal", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious\n" {
		t.Fatalf("symlink target changed: %q", b)
	}
}

// A monitor started by an older daemon listens at <dir>/monitor.sock; a
// restarted daemon still finds it there.
func TestConnectFindsALegacySocket(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, SocketName))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := readRequest(c); err == nil {
			json.NewEncoder(c).Encode(response{Result: json.RawMessage(`{"pid":4242}`)})
		}
	}()
	c, err := Connect(ctxT(t, 10*time.Second), dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Pid() != 4242 {
		t.Fatalf("pid %d", c.Pid())
	}
}
