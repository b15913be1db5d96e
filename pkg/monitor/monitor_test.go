package monitor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/pod-shim/pod-shim/pkg/runc"
)

func TestOutputAndExitCode(t *testing.T) {
	p := newPod(t)
	id := newID()
	logPath := filepath.Join(t.TempDir(), "c.log")
	p.run(id, logPath, false, "sh", "-c", "echo out1; echo err1 >&2; echo out2; printf unterminated; exit 3")
	if _, err := os.Stat(logPath); err != nil {
		t.Fatalf("log file must exist when Create returns: %v", err)
	}
	if _, err := ReadExit(p.dir, id); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadExit before start: want ErrNotExist, got %v", err)
	}
	ctx := ctxT(t, 30*time.Second)
	if err := p.client.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	exit, err := p.client.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if exit.ExitCode != 3 || exit.ExitedAt.IsZero() || exit.Pid <= 0 {
		t.Fatalf("exit = %+v, want code 3 with time and pid", exit)
	}
	onDisk, err := ReadExit(p.dir, id)
	if err != nil {
		t.Fatal(err)
	}
	if onDisk.ExitCode != 3 || !onDisk.ExitedAt.Equal(exit.ExitedAt) {
		t.Fatalf("exit file %+v differs from Wait's %+v", onDisk, exit)
	}
	// The exit is recorded only after the output is drained: the log is
	// complete right now, without waiting.
	recs := readLog(t, logPath)
	if got, want := lines(recs, "stdout"), []string{"out1", "out2", "unterminated"}; !equal(got, want) {
		t.Errorf("stdout lines = %q, want %q", got, want)
	}
	if got, want := lines(recs, "stderr"), []string{"err1"}; !equal(got, want) {
		t.Errorf("stderr lines = %q, want %q", got, want)
	}
	for _, r := range recs {
		// Only the unterminated last line is a P record: the kubelet must
		// not add a newline the container never wrote.
		if r.partial != (r.text == "unterminated") {
			t.Errorf("record %+v: partial = %v", r, r.partial)
		}
		if r.time.After(exit.ExitedAt.Add(time.Second)) {
			t.Errorf("record %+v timestamped after exit %v", r, exit.ExitedAt)
		}
	}
	if err := p.client.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := p.client.Delete(ctx, id); err != nil {
		t.Fatalf("second delete must succeed: %v", err)
	}
	if _, err := ReadExit(p.dir, id); err != nil {
		t.Fatalf("Delete must keep the exit file: %v", err)
	}
	if err := RemoveExit(p.dir, id); err != nil {
		t.Fatal(err)
	}
	if err := RemoveExit(p.dir, id); err != nil {
		t.Fatalf("RemoveExit twice: %v", err)
	}
}

func TestPauseRunDetachAndKill(t *testing.T) {
	p := newPod(t)
	id := newID()
	ctx := ctxT(t, 30*time.Second)
	pid := p.run(id, "", true, "/pause")
	st, err := p.rt.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "running" || st.Pid != pid {
		t.Fatalf("state = %+v, want running with pid %d", st, pid)
	}
	// pause is the pid namespace's init: until its handler is installed the
	// kernel drops SIGTERM, so wait for it before stopping the container.
	waitCaught(t, pid, syscall.SIGTERM)
	if ppid := parentOf(t, pid); ppid != p.client.Pid() {
		t.Fatalf("pause's parent is %d, want the monitor %d (subreaper)", ppid, p.client.Pid())
	}
	if err := p.client.Kill(ctx, id, syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	exit, err := p.client.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if exit.ExitCode != 0 && exit.ExitCode != 128+int(syscall.SIGTERM) {
		t.Fatalf("exit code %d, want 0 or 143", exit.ExitCode)
	}
	if exit.Pid != pid {
		t.Fatalf("exit pid %d, want %d", exit.Pid, pid)
	}
	if err := p.client.Kill(ctx, id, syscall.SIGKILL, false); err != nil {
		t.Fatalf("kill of an exited container must succeed: %v", err)
	}
	if err := p.client.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := p.client.Kill(ctx, id, syscall.SIGKILL, true); err != nil {
		t.Fatalf("kill of a deleted container must succeed: %v", err)
	}
	if _, err := p.rt.State(ctx, id); !errors.Is(err, runc.ErrNotFound) {
		t.Fatalf("runc state after delete: want not found, got %v", err)
	}
	// Wait after Delete answers from the exit file.
	if again, err := p.client.Wait(ctx, id); err != nil || again.ExitCode != exit.ExitCode {
		t.Fatalf("wait after delete = %+v, %v", again, err)
	}
	if err := p.client.Start(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("start of a deleted container: want ErrNotFound, got %v", err)
	}
}

func TestExitBeforePidIsRegistered(t *testing.T) {
	p := newPod(t)
	ctx := ctxT(t, 60*time.Second)
	// `run --detach` of a container that exits at once: the reaper usually
	// sees the exit before the monitor has read the pid file.
	for i := range 5 {
		id := newID()
		p.run(id, "", true, "sh", "-c", fmt.Sprintf("exit %d", 10+i))
		exit, err := p.client.Wait(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if exit.ExitCode != 10+i {
			t.Fatalf("exit code %d, want %d", exit.ExitCode, 10+i)
		}
		if err := p.client.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

func TestExec(t *testing.T) {
	p := newPod(t)
	id := newID()
	ctx := ctxT(t, 60*time.Second)
	p.run(id, "", true, "/pause")

	res, err := p.client.Exec(ctx, ExecRequest{ContainerID: id, Process: proc("sh", "-c", "echo hi; echo oops >&2; exit 7")})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "hi\n" || string(res.Stderr) != "oops\n" || res.ExitCode != 7 {
		t.Fatalf("exec = stdout %q stderr %q code %d", res.Stdout, res.Stderr, res.ExitCode)
	}

	res, err = p.client.Exec(ctx, ExecRequest{ContainerID: id, Process: proc("sh", "-c", "yes | head -c 1000000")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Stdout) != 1000000 || res.ExitCode != 0 {
		t.Fatalf("big exec output: %d bytes, code %d", len(res.Stdout), res.ExitCode)
	}

	begin := time.Now()
	_, err = p.client.Exec(ctx, ExecRequest{ContainerID: id, Process: proc("sleep", "10"), Timeout: time.Second})
	took := time.Since(begin)
	if !errors.Is(err, ErrExecTimeout) {
		t.Fatalf("want ErrExecTimeout, got %v", err)
	}
	t.Logf("exec timeout of 1s returned after %v", took)
	if took > 5*time.Second {
		t.Fatalf("timed-out exec took %v: the process was not killed", took)
	}
	if pids := processesIn(t, p.cgroup, "sleep"); len(pids) != 0 {
		t.Fatalf("timed-out exec process still alive: %v", pids)
	}

	if _, err := p.client.Exec(ctx, ExecRequest{ContainerID: id, Process: proc("/no/such/binary")}); err == nil {
		t.Fatal("exec of a missing binary must fail")
	}
	if _, err := p.client.Exec(ctx, ExecRequest{ContainerID: newID(), Process: proc("true")}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("exec in unknown container: want ErrNotFound, got %v", err)
	}
}

func TestLongLineIsSplit(t *testing.T) {
	p := newPod(t)
	id := newID()
	logPath := filepath.Join(t.TempDir(), "c.log")
	p.run(id, logPath, true, "sh", "-c", "dd if=/dev/zero bs=1024 count=100 2>/dev/null | tr '\\0' a; echo; echo after")
	if _, err := p.client.Wait(ctxT(t, 30*time.Second), id); err != nil {
		t.Fatal(err)
	}
	recs := readLog(t, logPath)
	var partials int
	for _, r := range recs {
		if r.partial {
			partials++
			if len(r.text) != DefaultMaxLogLine {
				t.Errorf("partial piece of %d bytes, want %d", len(r.text), DefaultMaxLogLine)
			}
		}
	}
	if partials != 102400/DefaultMaxLogLine {
		t.Errorf("%d partial pieces, want %d", partials, 102400/DefaultMaxLogLine)
	}
	got := lines(recs, "stdout")
	if len(got) != 2 || got[0] != strings.Repeat("a", 102400) || got[1] != "after" {
		t.Fatalf("joined lines: %d lines, first %d bytes", len(got), len(got[0]))
	}
}

func TestReopenLog(t *testing.T) {
	p := newPod(t)
	id := newID()
	logPath := filepath.Join(t.TempDir(), "c.log")
	const n = 150
	p.run(id, logPath, true, "sh", "-c", fmt.Sprintf("i=0; while [ $i -lt %d ]; do echo line$i; i=$((i+1)); sleep 0.01; done", n))
	ctx := ctxT(t, 30*time.Second)
	time.Sleep(500 * time.Millisecond)
	rotated := logPath + ".1"
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	if err := p.client.ReopenLog(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.Wait(ctx, id); err != nil {
		t.Fatal(err)
	}
	before, after := lines(readLog(t, rotated), "stdout"), lines(readLog(t, logPath), "stdout")
	if len(before) == 0 || len(after) == 0 {
		t.Fatalf("rotation split %d/%d lines: both files should have some", len(before), len(after))
	}
	all := append(before, after...)
	for i := range n {
		if i >= len(all) || all[i] != fmt.Sprintf("line%d", i) {
			t.Fatalf("line %d lost or out of order across the rotation: %q", i, all)
		}
	}
	if len(all) != n {
		t.Fatalf("%d lines, want %d", len(all), n)
	}
	if err := p.client.ReopenLog(ctx, id); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("reopen after exit: want ErrNotRunning, got %v", err)
	}
}

func TestReconnectAfterClientClose(t *testing.T) {
	p := newPod(t)
	id := newID()
	ctx := ctxT(t, 30*time.Second)
	p.run(id, "", true, "/pause")
	pid := p.client.Pid()
	if err := p.client.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.Exec(ctx, ExecRequest{ContainerID: id, Process: proc("true")}); err == nil {
		t.Fatal("a closed client must not talk to the monitor")
	}
	c, err := Connect(ctx, p.dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Pid() != pid {
		t.Fatalf("reconnected to pid %d, want %d", c.Pid(), pid)
	}
	res, err := c.Exec(ctx, ExecRequest{ContainerID: id, Process: proc("echo", "still here")})
	if err != nil || string(res.Stdout) != "still here\n" {
		t.Fatalf("exec after reconnect = %+v, %v", res, err)
	}
	// A Wait whose context ends returns without harming the container.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = c.Wait(short, id)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait with expiring ctx: want DeadlineExceeded, got %v", err)
	}
	if err := c.Kill(ctx, id, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	exit, err := c.Wait(ctx, id)
	if err != nil || exit.ExitCode != 128+int(syscall.SIGKILL) {
		t.Fatalf("wait = %+v, %v; want 137", exit, err)
	}
}

func TestMonitorOutlivesItsClient(t *testing.T) {
	p := newPod(t)
	id := newID()
	logPath := filepath.Join(t.TempDir(), "c.log")
	p.run(id, logPath, true, "sh", "-c", "while true; do echo tick; sleep 0.05; done")
	if sid, _ := unix.Getsid(p.client.Pid()); sid != p.client.Pid() {
		t.Fatalf("monitor session %d: want its own session %d", sid, p.client.Pid())
	}
	// The daemon goes away: nothing of the test talks to the monitor now.
	p.client.Close()
	p.client = nil
	count := func() int { return len(readLog(t, logPath)) }
	first := count()
	time.Sleep(500 * time.Millisecond)
	if second := count(); second <= first {
		t.Fatalf("log stopped growing without a client: %d then %d records", first, second)
	}
	c, err := Connect(ctxT(t, 10*time.Second), p.dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(ctxT(t, 10*time.Second), id, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
}

func TestStdinPipeStaysOpen(t *testing.T) {
	p := newPod(t)
	ctx := ctxT(t, 30*time.Second)
	open, closed := newID(), newID()
	logPath := filepath.Join(t.TempDir(), "c.log")
	// cat ends at stdin's EOF: with Stdin the monitor holds the pipe open
	// for a later attach; without it, stdin is /dev/null.
	if _, err := p.client.Create(ctx, CreateRequest{ID: open, Bundle: p.bundle(open, "sh", "-c", "cat; echo eof"), LogPath: logPath, Stdin: true, StdinOnce: true, Start: true}); err != nil {
		t.Fatal(err)
	}
	p.run(closed, "", true, "cat")
	if exit, err := p.client.Wait(ctx, closed); err != nil || exit.ExitCode != 0 {
		t.Fatalf("cat on /dev/null: %+v, %v", exit, err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := p.client.Wait(short, open); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cat with a stdin pipe should still run: %v", err)
	}
	if err := p.client.Delete(ctx, open); err != nil {
		t.Fatal(err)
	}
}

func TestContainersOutliveAKilledMonitor(t *testing.T) {
	p := newPod(t)
	id := newID()
	pid := p.run(id, "", true, "/pause")
	monitorPid := p.client.Pid()
	if err := syscall.Kill(monitorPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !waitGone(monitorPid, 5*time.Second) {
		t.Fatal("monitor survived SIGKILL")
	}
	if !alive(pid) {
		t.Fatal("container died with its monitor")
	}
	if _, err := Connect(ctxT(t, 5*time.Second), p.dir); err == nil {
		t.Fatal("Connect to a dead monitor must fail")
	}
	// What the daemon does then: clean up through the runtime alone.
	if err := p.rt.Delete(ctxT(t, 10*time.Second), id, true); err != nil {
		t.Fatal(err)
	}
	if !waitGone(pid, 5*time.Second) {
		t.Fatal("container still running after runc delete --force")
	}
}

func TestOOMKilled(t *testing.T) {
	p := newPod(t)
	id := newID()
	limit := int64(16 << 20)
	bundle := p.bundleWith(id, func(s *specs.Spec) {
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit, Swap: &limit}}
	}, "sh", "-c", "x=$(yes | head -c 100000000); echo survived")
	ctx := ctxT(t, 60*time.Second)
	if _, err := p.client.Create(ctx, CreateRequest{ID: id, Bundle: bundle, Start: true}); err != nil {
		if strings.Contains(err.Error(), "swap") {
			t.Skipf("no swap accounting on this host: %v", err)
		}
		t.Fatal(err)
	}
	exit, err := p.client.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if exit.ExitCode != 137 || !exit.OOMKilled {
		t.Fatalf("exit = %+v, want 137 and OOMKilled", exit)
	}
}

func TestShutdownLeavesNothing(t *testing.T) {
	p := newPod(t)
	ctx := ctxT(t, 30*time.Second)
	pause, app := newID(), newID()
	pausePid := p.run(pause, "", true, "/pause")
	appPid := p.run(app, filepath.Join(t.TempDir(), "app.log"), true, "sleep", "1000")
	created := newID()
	p.run(created, "", false, "sleep", "1000")
	monitorPid := p.client.Pid()
	if err := p.client.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if !waitGone(monitorPid, 5*time.Second) {
		t.Fatal("monitor still running after Shutdown")
	}
	for _, pid := range []int{pausePid, appPid} {
		if alive(pid) {
			t.Errorf("container process %d still running", pid)
		}
	}
	if _, err := os.Stat(SocketPath(p.dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	states, err := p.rt.List(ctx)
	if err != nil || len(states) != 0 {
		t.Errorf("runc still lists %+v (%v)", states, err)
	}
	for _, id := range []string{pause, app} {
		if _, err := ReadExit(p.dir, id); err != nil {
			t.Errorf("exit of %s not recorded: %v", id, err)
		}
	}
	if _, err := Connect(ctx, p.dir); err == nil {
		t.Error("Connect to a shut-down monitor must fail")
	}
}

func TestCreateFailureIsReported(t *testing.T) {
	p := newPod(t)
	ctx := ctxT(t, 30*time.Second)
	id := newID()
	logPath := filepath.Join(t.TempDir(), "c.log")
	_, err := p.client.Create(ctx, CreateRequest{ID: id, Bundle: p.bundle(id, "/no/such/binary"), LogPath: logPath, Start: true})
	if err == nil {
		t.Fatal("create of a missing binary must fail")
	}
	if !strings.Contains(err.Error(), "no such file") && !strings.Contains(err.Error(), "not found") {
		t.Errorf("error does not say why: %v", err)
	}
	if states, _ := p.rt.List(ctx); len(states) != 0 {
		t.Errorf("failed create left %+v", states)
	}
	// The id is free again.
	if _, err := p.client.Create(ctx, CreateRequest{ID: id, Bundle: p.bundle(id, "true"), Start: true}); err != nil {
		t.Fatalf("create after failure: %v", err)
	}
	if _, err := p.client.Create(ctx, CreateRequest{ID: id, Bundle: p.bundle(id, "true")}); err == nil {
		t.Fatal("duplicate id must fail")
	}
	if _, err := p.client.Create(ctx, CreateRequest{ID: newID(), Bundle: "/x", Terminal: true}); err == nil {
		t.Fatal("terminal create with no bundle must fail")
	}
}

func TestConnectToNothing(t *testing.T) {
	_, err := Connect(ctxT(t, 5*time.Second), t.TempDir())
	if err == nil {
		t.Fatal("Connect to a dir without a monitor must fail")
	}
}

func TestMonitorMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("memory figures are meaningless under the race detector")
	}
	p := newPod(t)
	pid := p.client.Pid()
	report := func(when string) int {
		rss, pss, anon := memory(t, pid)
		t.Logf("monitor %s: RSS %d KiB, PSS %d KiB, anonymous %d KiB", when, rss, pss, anon)
		return pss
	}
	report("idle")
	p.run(newID(), "", true, "/pause")
	time.Sleep(200 * time.Millisecond)
	report("with pause")
	for range 3 {
		p.run(newID(), filepath.Join(t.TempDir(), "c.log"), true, "sh", "-c", "while true; do echo tick; sleep 0.1; done")
	}
	time.Sleep(time.Second)
	pss := report("with pause + 3 logging containers")
	// A regression guard, far above what it costs: containerd's shim is
	// 7-10 MiB; the monitor must stay well below.
	if pss > 8*1024 {
		t.Errorf("monitor PSS %d KiB with 4 containers: too big", pss)
	}
}

func BenchmarkCreateStart(b *testing.B) { benchLifecycle(b, false) }

func BenchmarkRunDetach(b *testing.B) { benchLifecycle(b, true) }

// benchLifecycle measures a pause container's create+start through the
// monitor: `runc create` then `runc start`, or one `runc run --detach`.
// Deleting is outside the timed part.
func benchLifecycle(b *testing.B, detach bool) {
	p := newPod(b)
	ctx := ctxT(b, 10*time.Minute)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		id := newID()
		bundle := p.bundle(id, "/pause")
		b.StartTimer()
		if _, err := p.client.Create(ctx, CreateRequest{ID: id, Bundle: bundle, Start: detach}); err != nil {
			b.Fatal(err)
		}
		if !detach {
			if err := p.client.Start(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if err := p.client.Delete(ctx, id); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

func proc(args ...string) specs.Process {
	return specs.Process{Args: args, Env: []string{"PATH=/bin"}, Cwd: "/"}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// waitCaught waits until pid has a handler for sig (SigCgt in its status).
func waitCaught(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if mask, ok := strings.CutPrefix(line, "SigCgt:"); ok {
				var m uint64
				fmt.Sscanf(strings.TrimSpace(mask), "%x", &m)
				if m&(1<<(uint(sig)-1)) != 0 {
					return
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("process %d never installed a handler for %v", pid, sig)
}

func parentOf(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	var ppid int
	fmt.Sscanf(s[strings.LastIndexByte(s, ')')+2:], "%c %d", new(byte), &ppid)
	return ppid
}

// processesIn lists host pids of processes named comm in the test's cgroups.
func processesIn(t *testing.T, cgroup, comm string) []int {
	t.Helper()
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		c, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(c)) != comm || !alive(pid) {
			continue
		}
		cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err == nil && strings.Contains(string(cg), cgroup) {
			out = append(out, pid)
		}
	}
	return out
}
