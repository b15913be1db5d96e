package lockmap

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLockSerialisesOneKeyOnly(t *testing.T) {
	var m Map
	unlockA := m.Lock("a")
	// Another key is not held up.
	m.Lock("b")()

	got := make(chan struct{})
	go func() {
		m.Lock("a")()
		close(got)
	}()
	waitFor(t, func() bool { return m.Refs("a") == 2 })
	select {
	case <-got:
		t.Fatal("a second Lock of the same key did not wait")
	default:
	}
	unlockA()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("Lock still waits after the unlock")
	}
	waitFor(t, func() bool { return m.Len() == 0 })
}

// TestNeverTwoHolders: a waiter and a newcomer never hold one key at the
// same time, however often the key's entry comes and goes. The map this
// replaced had Delete, which both Remove paths called before unlocking:
// with a m.Delete("a") before each unlock below, it saw two holders within a
// few hundred rounds.
func TestNeverTwoHolders(t *testing.T) {
	var m Map
	var holders, maxHolders atomic.Int32
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				unlock := m.Lock("a")
				n := holders.Add(1)
				for {
					old := maxHolders.Load()
					if n <= old || maxHolders.CompareAndSwap(old, n) {
						break
					}
				}
				holders.Add(-1)
				unlock()
			}
		}()
	}
	wg.Wait()
	if got := maxHolders.Load(); got != 1 {
		t.Fatalf("%d goroutines held the lock of one key at once", got)
	}
	if n := m.Len(); n != 0 {
		t.Errorf("%d entries left after every holder released", n)
	}
}

func TestLockContextGivesUp(t *testing.T) {
	var m Map
	unlock := m.Lock("a")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		u, err := m.LockContext(ctx, "a")
		if err == nil {
			u()
		}
		errc <- err
	}()
	waitFor(t, func() bool { return m.Refs("a") == 2 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("LockContext with a cancelled context while held: %v, want context.Canceled", err)
	}
	if n := m.Refs("a"); n != 1 {
		t.Fatalf("the cancelled waiter left %d references, want the holder's 1", n)
	}
	unlock()
	unlock() // a second unlock is harmless
	if n := m.Len(); n != 0 {
		t.Fatalf("%d entries left", n)
	}

	if u, ok := m.TryLock("a"); !ok {
		t.Fatal("TryLock of a free key failed")
	} else if _, ok := m.TryLock("a"); ok {
		t.Fatal("TryLock of a held key succeeded")
	} else {
		u()
	}
	if n := m.Len(); n != 0 {
		t.Fatalf("%d entries left after TryLock", n)
	}

	// A done context does not take even a free lock.
	if _, err := m.LockContext(ctx, "b"); !errors.Is(err, context.Canceled) {
		t.Fatalf("LockContext with a done context: %v", err)
	}
	if n := m.Len(); n != 0 {
		t.Fatalf("%d entries left after a refused lock", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
