package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

// The pause start path writes /etc/hosts while the CNI ADD runs beside it;
// the pod's IP must reach the final hosts file without the two sharing
// the record unsynchronised (run with -race).
func TestRunWritesPodIPToHostsWithoutRace(t *testing.T) {
	env := newTestEnv(t, nil)
	sb := env.run(t, "web")
	if sb.IP() != "10.88.0.7" {
		t.Fatalf("IP = %q, want the fake network's 10.88.0.7", sb.IP())
	}
	hosts, err := os.ReadFile(sb.HostsPath())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(hosts), "10.88.0.7\tweb\n") {
		t.Fatalf("hosts = %q, want the pod's IP and name", hosts)
	}
	if rec := env.stored(t, sb.ID); rec == nil || rec.State != StateReady || rec.IP() != "10.88.0.7" {
		t.Fatalf("record = %+v, want Ready with the IP", rec)
	}
}

// Stop and Remove of one pod, at once, in every order the scheduler picks:
// whatever Stop loaded must not outlive the Remove (the record would come
// back), and the pod's address must be released exactly once.
func TestStopRacingRemoveLeavesNothing(t *testing.T) {
	env := newTestEnv(t, nil)
	for i := range 40 {
		sb := env.run(t, fmt.Sprintf("pod-%d", i))
		var wg sync.WaitGroup
		errs := make([]error, 2)
		wg.Add(2)
		go func() { defer wg.Done(); errs[0] = env.m.Stop(context.Background(), sb.ID) }()
		go func() { defer wg.Done(); errs[1] = env.m.Remove(context.Background(), sb.ID) }()
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if rec := env.stored(t, sb.ID); rec != nil {
			t.Fatalf("round %d: a removed pod's record came back: %+v", i, rec)
		}
		if _, err := env.m.Get(sb.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("round %d: Get after Remove = %v, want ErrNotFound", i, err)
		}
		if n := len(env.net.teardownsOf(sb.ID)); n != 1 {
			t.Fatalf("round %d: network torn down %d times, want once", i, n)
		}
	}
	if n := env.net.pinned(); n != 0 {
		t.Fatalf("%d netns left pinned", n)
	}
}

// Two Removes of one pod: the second finds it gone and does nothing.
func TestRemoveRacingRemove(t *testing.T) {
	env := newTestEnv(t, nil)
	for i := range 40 {
		sb := env.run(t, fmt.Sprintf("pod-%d", i))
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j := range errs {
			wg.Add(1)
			go func() { defer wg.Done(); errs[j] = env.m.Remove(context.Background(), sb.ID) }()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if rec := env.stored(t, sb.ID); rec != nil {
			t.Fatalf("round %d: record left: %+v", i, rec)
		}
		if n := len(env.net.teardownsOf(sb.ID)); n != 1 {
			t.Fatalf("round %d: network torn down %d times, want once", i, n)
		}
		if kills, deletes := env.monitors.of(sb.Dir).counts(); kills != 1 || deletes != 1 {
			t.Fatalf("round %d: pause killed %d and deleted %d times, want once each", i, kills, deletes)
		}
	}
}

// A Stop that arrives while the pod's Run is still setting up waits for
// the Run and then stops the pod it made: pause killed, and the address
// the Run got released with its result (a stale record without it would
// leak the IP).
func TestStopDuringRun(t *testing.T) {
	env := newTestEnv(t, nil)
	env.net.inSetup = make(chan string)
	for i := range 20 {
		env.net.release = make(chan struct{})
		type outcome struct {
			sb  *Sandbox
			err error
		}
		done := make(chan outcome, 1)
		go func() {
			sb, err := env.m.Run(context.Background(), podConfig(fmt.Sprintf("pod-%d", i)))
			done <- outcome{sb, err}
		}()
		id := <-env.net.inSetup
		stopped := make(chan error, 1)
		go func() { stopped <- env.m.Stop(context.Background(), id) }()
		close(env.net.release)
		run := <-done
		if run.err != nil {
			t.Fatalf("round %d: Run: %v", i, run.err)
		}
		if err := <-stopped; err != nil {
			t.Fatalf("round %d: Stop: %v", i, err)
		}
		rec := env.stored(t, id)
		if rec == nil {
			t.Fatalf("round %d: the record of a stopped pod is gone", i)
		}
		if rec.State != StateNotReady {
			t.Fatalf("round %d: state after Stop = %s, want notready", i, rec.State)
		}
		tds := env.net.teardownsOf(id)
		if len(tds) != 1 || tds[0] == nil || len(tds[0].IPs) == 0 {
			t.Fatalf("round %d: teardowns = %v, want one with the Run's result", i, tds)
		}
		if kills, _ := env.monitors.of(run.sb.Dir).counts(); kills != 1 {
			t.Fatalf("round %d: pause killed %d times, want once", i, kills)
		}
	}
}

// A Stop waiting behind a Run gives up when its client does, and changes
// nothing.
func TestStopHonoursItsContextWhileWaiting(t *testing.T) {
	env := newTestEnv(t, nil)
	env.net.inSetup = make(chan string)
	env.net.release = make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := env.m.Run(context.Background(), podConfig("slow"))
		done <- err
	}()
	id := <-env.net.inSetup
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- env.m.Stop(ctx, id) }()
	cancel()
	if err := <-stopped; !errors.Is(err, context.Canceled) {
		t.Fatalf("Stop = %v, want context.Canceled", err)
	}
	close(env.net.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rec := env.stored(t, id); rec == nil || rec.State != StateReady {
		t.Fatalf("record = %+v, want the Run's Ready pod untouched", rec)
	}
}
