package lockmap

import (
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
	select {
	case <-got:
		t.Fatal("a second Lock of the same key did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	unlockA()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("Lock still waits after the unlock")
	}
	m.Delete("a")
	m.Delete("never")
	m.Lock("a")()
}
