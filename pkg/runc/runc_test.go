package runc

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
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const runcBinary = "/usr/sbin/runc"

func TestClassify(t *testing.T) {
	tests := []struct {
		msg  string
		want error
	}{
		{"exit status 1: container does not exist", ErrNotFound},
		{`exit status 1: container "x" does not exist`, ErrNotFound},
		{"exit status 1: container not running", ErrNotRunning},
		{"exit status 1: cannot kill: process already finished", ErrNotRunning},
		{"exit status 1: permission denied", nil},
	}
	for _, tt := range tests {
		err := classify(errors.New(tt.msg))
		for _, sentinel := range []error{ErrNotFound, ErrNotRunning} {
			if got := errors.Is(err, sentinel); got != (sentinel == tt.want) {
				t.Errorf("classify(%q) is %v = %v", tt.msg, sentinel, got)
			}
		}
		if !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("classify(%q) lost the message: %v", tt.msg, err)
		}
	}
}

func TestLastLogError(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content, want string
	}{
		{"none", `{"level":"info","msg":"hello","time":"x"}` + "\n", ""},
		{"last error wins", `{"level":"error","msg":"first","time":"x"}` + "\n" +
			`{"level":"error","msg":"exec: \"nope\": executable file not found in $PATH","time":"x"}` + "\n",
			`exec: "nope": executable file not found in $PATH`},
		{"missing file", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			if tt.content != "" {
				if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := LastLogError(path); got != tt.want {
				t.Errorf("LastLogError = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestExitStatus(t *testing.T) {
	if _, ok := ExitStatus(errors.New("x")); ok {
		t.Error("plain error has no exit status")
	}
}

// TestLifecycle drives real runc the way the daemon does when a monitor is
// gone: List, State, Kill and Delete of a container it did not start.
func TestLifecycle(t *testing.T) {
	rt, bundle, id := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	pidFile := filepath.Join(t.TempDir(), "pid")
	afterStart := false
	if err := rt.Run(ctx, id, bundle, CreateOptions{
		PidFile: pidFile, IO: IO{Stdout: null, Stderr: null}, AfterStart: func() { afterStart = true },
	}); err != nil {
		t.Fatal(err)
	}
	if !afterStart {
		t.Error("AfterStart was not called")
	}
	st, err := rt.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "running" || st.Pid <= 0 || st.Bundle != bundle {
		t.Fatalf("state = %+v", st)
	}
	list, err := rt.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if err := rt.Kill(ctx, id, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	waitStopped(t, rt, id)
	if err := rt.Kill(ctx, id, syscall.SIGKILL, false); !errors.Is(err, ErrNotRunning) {
		t.Errorf("kill of a stopped container: want ErrNotRunning, got %v", err)
	}
	if err := rt.Delete(ctx, id, false); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.State(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("state after delete: want ErrNotFound, got %v", err)
	}
	if err := rt.Delete(ctx, id, false); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete of a deleted container: want ErrNotFound, got %v", err)
	}
	// runc's --force also means "absent is fine".
	if err := rt.Delete(ctx, id, true); err != nil {
		t.Errorf("forced delete of a deleted container: %v", err)
	}
	if err := rt.Kill(ctx, id, syscall.SIGKILL, true); !errors.Is(err, ErrNotFound) {
		t.Errorf("kill of a deleted container: want ErrNotFound, got %v", err)
	}
}

func TestCreateFailureCarriesRuncError(t *testing.T) {
	rt, _, id := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	logFile := filepath.Join(t.TempDir(), "runc.log")
	err = rt.Create(ctx, id, filepath.Join(t.TempDir(), "no-bundle"), CreateOptions{
		LogFile: logFile, IO: IO{Stdout: null, Stderr: null},
	})
	if err == nil {
		t.Fatal("create without a bundle must fail")
	}
	if _, ok := ExitStatus(err); !ok || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("error should carry runc's status and message: %v", err)
	}
}

// BenchmarkRunDetach is the floor for the monitor's create path: one
// `runc run --detach` of a pause container, without a monitor in between.
func BenchmarkRunDetach(b *testing.B) {
	rt, _, _ := setup(b)
	ctx := context.Background()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	for range b.N {
		b.StopTimer()
		id := randomHex(32)
		bundle := writeBundle(b, rt, id)
		b.StartTimer()
		if err := rt.Run(ctx, id, bundle, CreateOptions{IO: IO{Stdout: null, Stderr: null}}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := rt.Delete(ctx, id, true); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

var (
	testRootfs string
	testCgroup string
)

// setup builds a rootfs with the pause binary and a bundle for it, and a
// runc root in a temp dir; cleanup deletes whatever is left in that root.
func setup(t testing.TB) (*Runtime, string, string) {
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
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"proc", "dev"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src, _ := filepath.Abs("../../cmd/pod-shim-pause/pause.c")
	if out, err := exec.Command("gcc", "-Os", "-static", "-o", filepath.Join(rootfs, "pause"), src).CombinedOutput(); err != nil {
		t.Fatalf("build pause: %v: %s", err, out)
	}
	testRootfs = rootfs
	testCgroup = "pod-shim-rt-test-" + randomHex(6)
	rt := New(runcBinary, t.TempDir())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		states, _ := rt.List(ctx)
		for _, s := range states {
			rt.Delete(ctx, s.ID, true)
		}
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", testCgroup))
		for _, d := range dirs {
			subs, _ := filepath.Glob(filepath.Join(d, "*"))
			for _, s := range subs {
				if fi, err := os.Stat(s); err == nil && fi.IsDir() {
					os.Remove(s)
				}
			}
			os.Remove(d)
		}
	})
	id := randomHex(32)
	return rt, writeBundle(t, rt, id), id
}

func writeBundle(t testing.TB, rt *Runtime, id string) string {
	dir := filepath.Join(filepath.Dir(testRootfs), id[:12])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: testRootfs, Readonly: true},
		Process: &specs.Process{Args: []string{"/pause"}, Cwd: "/"},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=755"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: fmt.Sprintf("/%s/%s", testCgroup, id[:12]),
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace},
			},
		},
	}
	data, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func waitStopped(t *testing.T, rt *Runtime, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		st, err := rt.State(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status == "stopped" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("container %s did not stop", id)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
