package monitor

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/pod-shim/pod-shim/pkg/runc"
)

// countingRuntime is a runc wrapper that appends each invocation's
// arguments to a file before it execs the real runc.
func countingRuntime(t *testing.T) (binary string, calls func(sub, id string) int) {
	t.Helper()
	dir := t.TempDir()
	logFile := filepath.Join(dir, "calls")
	binary = filepath.Join(dir, "runc")
	script := "#!/bin/sh\necho \"$*\" >>" + logFile + "\necho \"env GOMAXPROCS=$GOMAXPROCS $" + maxProcsEnv + "\" >>" + logFile + ".env\nexec " + runcBinary + " \"$@\"\n"
	if err := os.WriteFile(binary, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return binary, func(sub, id string) int {
		data, _ := os.ReadFile(logFile)
		n := 0
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) > 0 && f[len(f)-1] == id || len(f) > 1 && f[len(f)-2] == id {
				for _, w := range f {
					if w == sub {
						n++
						break
					}
				}
			}
		}
		return n
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// The calls a pod's teardown makes (stop: SIGKILL to all; remove: Delete)
// spawn no runc for a container in a pid namespace of its own: the kill goes
// through a pidfd, and the monitor deletes runc's state when it reaps the
// exit, off the caller's path.
func TestTeardownWithoutRuncOnTheCallPath(t *testing.T) {
	bin, calls := countingRuntime(t)
	p := newPodWith(t, func(o *StartOptions) { o.Runtime = bin })
	ctx := ctxT(t, 30*time.Second)
	id := newID()
	pid := p.run(id, "", true, "sleep", "3600")

	if err := p.client.Kill(ctx, id, syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	exit, err := p.client.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if exit.Pid != pid || exit.ExitCode != 128+int(syscall.SIGKILL) {
		t.Fatalf("exit = %+v, want pid %d killed by SIGKILL", exit, pid)
	}
	if n := calls("kill", id); n != 0 {
		t.Errorf("runc kill ran %d times; a SIGKILL to a pid namespace's init needs none", n)
	}
	if !waitFor(10*time.Second, func() bool {
		_, err := p.rt.State(ctx, id)
		return errors.Is(err, runc.ErrNotFound)
	}) {
		t.Fatalf("the monitor did not delete the exited container from runc (runc delete ran %d times)", calls("delete", id))
	}
	if err := p.client.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if n := calls("delete", id); n != 1 {
		t.Errorf("runc delete ran %d times, want once (at the exit, not again in Delete)", n)
	}
	if _, err := ReadExit(p.dir, id); err != nil {
		t.Fatalf("exit file after Delete: %v", err)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// Start gives the monitor one P from its start; runc must not
		// inherit that.
		env, err := os.ReadFile(filepath.Join(filepath.Dir(bin), "calls.env"))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(env)), "\n") {
			if strings.TrimSpace(line) != "env GOMAXPROCS=" {
				t.Errorf("runc ran with %q", line)
			}
		}
		data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.client.Pid()), "environ"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "\x00GOMAXPROCS=1\x00") {
			t.Errorf("the monitor did not start with GOMAXPROCS=1")
		}
	}
	// Signalling the deleted container is still success, without runc for
	// the init alone.
	if err := p.client.Kill(ctx, id, syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
}

// Delete of a running container kills it first and still leaves exactly one
// runc delete, whoever runs it.
func TestDeleteRunningContainer(t *testing.T) {
	bin, calls := countingRuntime(t)
	p := newPodWith(t, func(o *StartOptions) { o.Runtime = bin })
	ctx := ctxT(t, 30*time.Second)
	id := newID()
	pid := p.run(id, "", true, "sleep", "3600")
	if err := p.client.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("container init %d still alive after Delete", pid)
	}
	exit, err := ReadExit(p.dir, id)
	if err != nil {
		t.Fatalf("Delete must leave the exit file: %v", err)
	}
	if exit.ExitCode != 128+int(syscall.SIGKILL) {
		t.Fatalf("exit code %d, want %d", exit.ExitCode, 128+int(syscall.SIGKILL))
	}
	if n := calls("delete", id); n != 1 {
		t.Errorf("runc delete ran %d times, want 1", n)
	}
	if _, err := p.rt.State(ctx, id); !errors.Is(err, runc.ErrNotFound) {
		t.Fatalf("runc state after Delete: want not found, got %v", err)
	}
}

// A container that shares its pid namespace (here the host's) may leave
// processes behind its init, so killing all of it is runc's job.
func TestKillAllWithoutOwnPidNamespaceUsesRunc(t *testing.T) {
	bin, calls := countingRuntime(t)
	p := newPodWith(t, func(o *StartOptions) { o.Runtime = bin })
	ctx := ctxT(t, 30*time.Second)
	id := newID()
	bundle := p.bundleWith(id, sharePidNS, "sleep", "3600")
	pid, err := p.client.Create(ctx, CreateRequest{ID: id, Bundle: bundle, Start: true})
	if err != nil {
		t.Fatal(err)
	}
	if isPidNSInit(pid) {
		t.Fatalf("pid %d reported as a pid namespace's init", pid)
	}
	if err := p.client.Kill(ctx, id, syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.Wait(ctx, id); err != nil {
		t.Fatal(err)
	}
	if n := calls("kill", id); n != 1 {
		t.Errorf("runc kill ran %d times, want 1", n)
	}
	if err := p.client.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
}

func TestIsPidNSInit(t *testing.T) {
	if isPidNSInit(os.Getpid()) {
		t.Error("the test process is not the init of a pid namespace of its own")
	}
	if isPidNSInit(1 << 30) {
		t.Error("a pid that does not exist is not an init")
	}
}

// pipes counts the pipe fds pid holds.
func pipes(t *testing.T, pid int) int {
	t.Helper()
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(target, "pipe:") {
			n++
		}
	}
	return n
}

// The pod's pause container (its id is the pod's) costs the monitor no pipes
// and no copiers: what it prints lands in the monitor's own log.
func TestPauseOutputGoesToMonitorLog(t *testing.T) {
	id := newID()
	p := newPodWith(t, func(o *StartOptions) { o.SandboxID = id })
	ctx := ctxT(t, 30*time.Second)
	before := pipes(t, p.client.Pid())
	p.run(id, "", true, "sh", "-c", "echo pause-says-hi; exec sleep 3600")
	if !waitFor(10*time.Second, func() bool {
		data, _ := os.ReadFile(filepath.Join(p.dir, LogName))
		return strings.Contains(string(data), "pause-says-hi")
	}) {
		t.Fatal("the pause container's output is not in the monitor's log")
	}
	if after := pipes(t, p.client.Pid()); after != before {
		t.Errorf("the monitor holds %d pipes with pause running, %d before", after, before)
	}
	if err := p.client.Kill(ctx, id, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.Wait(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := p.client.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := p.rt.State(ctx, id); !errors.Is(err, runc.ErrNotFound) {
		t.Fatalf("runc state of pause after Delete: want not found, got %v", err)
	}
}

// Wait answers at the exit, not after the runc delete the monitor then runs
// by itself (StopContainer would pay a runc spawn otherwise); Delete waits
// for that runc delete instead of racing it. The runtime here holds every
// delete until the test opens a gate.
func TestWaitDoesNotWaitForRuncDelete(t *testing.T) {
	bin, entered, gate, _ := gatedDeleteRuntime(t)
	p := newPodWith(t, func(o *StartOptions) { o.Runtime = bin })
	ctx := ctxT(t, 30*time.Second)
	id := newID()
	p.run(id, "", true, "sleep", "3600")

	if err := p.client.Kill(ctx, id, syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.Wait(ctx, id); err != nil {
		t.Fatalf("Wait with the runc delete held: %v", err)
	}
	if !waitFor(10*time.Second, func() bool { _, err := os.Stat(entered); return err == nil }) {
		t.Fatal("the monitor did not start a runc delete after the exit")
	}
	if _, err := p.rt.State(ctx, id); err != nil {
		t.Fatalf("runc state while its delete is held: %v (the delete should still be pending)", err)
	}

	deleted := make(chan error, 1)
	go func() { deleted <- p.client.Delete(ctx, id) }()
	stillBlocked(t, deleted, "Delete")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	if _, err := p.rt.State(ctx, id); !errors.Is(err, runc.ErrNotFound) {
		t.Fatalf("runc state after Delete: want not found, got %v", err)
	}
}

// gatedDeleteRuntime is runc behind a script that holds every `delete` until
// the gate file exists (entered tells it has started one) and logs every call
// to the calls file.
func gatedDeleteRuntime(t *testing.T) (bin, entered, gate, calls string) {
	t.Helper()
	dir := t.TempDir()
	gate = filepath.Join(dir, "gate")
	entered = filepath.Join(dir, "delete-entered")
	calls = filepath.Join(dir, "calls")
	bin = filepath.Join(dir, "runc")
	script := "#!/bin/sh\necho \"$*\" >>" + calls + "\nfor a; do [ \"$a\" = delete ] && { : >" + entered + "; while [ ! -e " + gate + " ]; do sleep 0.01; done; }; done\nexec " + runcBinary + " \"$@\"\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(gate, nil, 0o644) }) // never leave a delete hanging
	return bin, entered, gate, calls
}

// Killing all of an exited container that shared its pid namespace is left
// to the runc delete --force the monitor runs at the exit: a runc kill --all
// racing that delete failed on the cgroups it removed (critest's StopPodSandbox
// got "runc kill ... lstat /sys/fs/cgroup/devices/...: no such file").
func TestKillAllAfterExitWaitsForRuncDelete(t *testing.T) {
	bin, entered, gate, calls := gatedDeleteRuntime(t)
	p := newPodWith(t, func(o *StartOptions) { o.Runtime = bin })
	ctx := ctxT(t, 30*time.Second)
	id := newID()
	bundle := p.bundleWith(id, sharePidNS, "true")
	if _, err := p.client.Create(ctx, CreateRequest{ID: id, Bundle: bundle, Start: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.Wait(ctx, id); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { _, err := os.Stat(entered); return err == nil }) {
		t.Fatal("the monitor did not start a runc delete after the exit")
	}

	killed := make(chan error, 1)
	go func() { killed <- p.client.Kill(ctx, id, syscall.SIGKILL, true) }()
	stillBlocked(t, killed, "Kill --all")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-killed; err != nil {
		t.Fatalf("Kill --all of an exited container: %v", err)
	}
	data, _ := os.ReadFile(calls)
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); slices.Contains(f, "kill") && slices.Contains(f, id) {
			t.Errorf("runc ran %q; the delete --force at the exit kills what is left", line)
		}
	}
	if err := p.client.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
}

// An exec that loses the race with the container's exit is "not running"
// (the kubelet's probe then reads FailedPrecondition), never a runc error.
// The race is made wide here: the init shares the host's pid namespace and
// leaves a child holding its output, so the monitor records the exit only
// after draining that output, while runc already calls the container stopped.
func TestExecRacingExitIsNotRunning(t *testing.T) {
	p := newPod(t)
	ctx := ctxT(t, 60*time.Second)
	id := newID()
	bundle := p.bundleWith(id, sharePidNS, "sh", "-c", "sleep 1 & sleep 0.2")
	if _, err := p.client.Create(ctx, CreateRequest{ID: id, Bundle: bundle, Start: true}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := p.client.Exec(ctx, ExecRequest{ContainerID: id, Process: proc("true")})
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrNotRunning) {
			t.Fatalf("exec as the init exits: %v, want ErrNotRunning", err)
		}
		break
	}
	if err := p.client.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
}

// sharePidNS drops the pid namespace from a bundle's spec: the container
// shares the monitor's (here the host's), so its init's death does not take
// the rest of it along.
func sharePidNS(s *specs.Spec) {
	var ns []specs.LinuxNamespace
	for _, n := range s.Linux.Namespaces {
		if n.Type != specs.PIDNamespace {
			ns = append(ns, n)
		}
	}
	s.Linux.Namespaces = ns
}

// stillBlocked fails the test if call has returned while the monitor's runc
// delete is held. Not a synchronisation: a call that raced ahead returns
// within this time; one that waits stays blocked however long it is.
func stillBlocked(t *testing.T, done <-chan error, call string) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("%s returned (%v) while the monitor's runc delete was still held", call, err)
	case <-time.After(200 * time.Millisecond):
	}
}

// A kill whose runc loses the race with the container's own exit (finish's
// runc delete pulls the cgroups from under it; critest's StopPodSandbox got
// "runc kill ... lstat /sys/fs/cgroup/devices/...: no such file") succeeds:
// the container is dead. The runtime here fails every kill once the init has
// had time to exit by itself.
func TestKillLosingTheRaceWithTheExitSucceeds(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "runc")
	script := "#!/bin/sh\nfor a; do [ \"$a\" = kill ] && { sleep 1; echo 'lstat /sys/fs/cgroup/devices/x: no such file or directory' >&2; exit 1; }; done\nexec " + runcBinary + " \"$@\"\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	p := newPodWith(t, func(o *StartOptions) { o.Runtime = bin })
	ctx := ctxT(t, 30*time.Second)
	for _, all := range []bool{false, true} {
		id := newID()
		bundle := p.bundleWith(id, sharePidNS, "sleep", "0.3")
		if _, err := p.client.Create(ctx, CreateRequest{ID: id, Bundle: bundle, Start: true}); err != nil {
			t.Fatal(err)
		}
		// SIGKILL without a pid namespace of its own goes through runc.
		if err := p.client.Kill(ctx, id, syscall.SIGKILL, all); err != nil {
			t.Errorf("Kill (all=%v) racing the exit: %v", all, err)
		}
		if _, err := p.client.Wait(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := p.client.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}
