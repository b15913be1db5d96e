package events

import (
	"testing"
	"time"
)

func TestFanOutAndSlowSubscriberDropped(t *testing.T) {
	b := New()
	fast := b.Subscribe(16)
	slow := b.Subscribe(2)
	for i := range 5 {
		b.Publish(Event{ContainerID: string(rune('a' + i)), Type: Created, Time: time.Now()})
	}
	for i := range 5 {
		e := <-fast.C
		if e.ContainerID != string(rune('a'+i)) {
			t.Fatalf("fast got %q at %d", e.ContainerID, i)
		}
	}
	n := 0
	for range slow.C { // drains the 2 queued, then sees the close
		n++
	}
	if n != 2 || !slow.Lagged || b.Dropped() != 1 || b.Subscribers() != 1 {
		t.Fatalf("slow: got %d, lagged %v, dropped %d, subs %d", n, slow.Lagged, b.Dropped(), b.Subscribers())
	}
	fast.Close()
	fast.Close() // idempotent
	if b.Subscribers() != 0 {
		t.Fatal("subscriber left after Close")
	}
	b.Publish(Event{}) // no subscribers: no-op
}
