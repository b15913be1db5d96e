package container

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// TestGetRacingRemove: a status lookup that folds in an exit while the
// container is removed must not write the removed record back.
func TestGetRacingRemove(t *testing.T) {
	e := newEnv(t)
	c := e.running("a")
	e.mon.exit(c.ID, 0)

	reached, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	e.hooks.onStop = func(*Container) {
		if first.CompareAndSwap(false, true) {
			close(reached)
			<-release
		}
	}
	getDone := make(chan error, 1)
	go func() {
		_, err := e.m.Get(c.ID)
		getDone <- err
	}()
	<-reached // the Get is folding the exit in

	removeDone := make(chan error, 1)
	go func() { removeDone <- e.m.Remove(context.Background(), c.ID) }()
	// Let the Get go on once the Remove has finished or waits for the
	// container's lock (which the Get then holds).
	waitFor(t, "Remove to finish or wait for the lock", func() bool {
		select {
		case err := <-removeDone:
			removeDone <- err
			return true
		default:
			return e.m.locks.Refs(c.ID) >= 2
		}
	})
	close(release)
	if err := <-getDone; err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get: %v", err)
	}
	if err := <-removeDone; err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got := e.stored(c.ID); got != nil {
		t.Fatalf("removed container is back in the store, %s", got.State)
	}
	if _, err := e.m.Get(c.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Remove: %v, want ErrNotFound", err)
	}
}

// TestRemoveRacingRemove: two Removes of one container both succeed and
// undo it once.
func TestRemoveRacingRemove(t *testing.T) {
	e := newEnv(t)
	c := e.running("a")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.m.Remove(context.Background(), c.ID)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Remove %d: %v", i, err)
		}
	}
	if got := e.stored(c.ID); got != nil {
		t.Errorf("record left after two Removes: %s", got.State)
	}
	if n := e.mon.deleteCount(c.ID); n != 1 {
		t.Errorf("monitor asked to delete the container %d times, want 1", n)
	}
	if n := e.hooks.count("RemoveContainer"); n != 1 {
		t.Errorf("RemoveContainer hook called %d times, want 1", n)
	}
	e.imgs.mu.Lock()
	n := e.imgs.removed[c.ID]
	e.imgs.mu.Unlock()
	if n != 1 {
		t.Errorf("rootfs removed %d times, want 1", n)
	}
	if n := e.m.locks.Len(); n != 0 {
		t.Errorf("%d container locks left", n)
	}
}

// TestStopDuringCreate: a Stop of a container still being created waits
// for the Create and then finds a created (not running) container: nothing
// to stop, and the Create's record stands.
func TestStopDuringCreate(t *testing.T) {
	e := newEnv(t)
	inPrepare, release := make(chan string), make(chan struct{})
	e.imgs.prepare = func(id string) {
		inPrepare <- id
		<-release
	}
	created := make(chan error, 1)
	go func() {
		_, err := e.m.Create(context.Background(), e.pod.ID, Config{Name: "a", Image: "busybox"})
		created <- err
	}()
	id := <-inPrepare
	stopped := make(chan error, 1)
	go func() { stopped <- e.m.Stop(context.Background(), id, 0) }()
	waitFor(t, "Stop to finish or wait for the lock", func() bool {
		select {
		case err := <-stopped:
			stopped <- err
			return true
		default:
			return e.m.locks.Refs(id) >= 2
		}
	})
	e.imgs.prepare = nil
	close(release)
	if err := <-created; err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Stop during Create: %v", err)
	}
	got := e.stored(id)
	if got == nil || got.State != StateCreated {
		t.Fatalf("record after Stop during Create: %+v, want created", got)
	}
	if err := e.m.Start(context.Background(), id); err != nil {
		t.Fatalf("Start after the Stop: %v", err)
	}
	if n := e.m.locks.Len(); n != 0 {
		t.Errorf("%d container locks left", n)
	}
}
