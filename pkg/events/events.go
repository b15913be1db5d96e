// Package events fans container lifecycle events out to subscribers (the
// kubelet's evented PLEG, crictl events). Publishing never blocks: a
// subscriber that falls a whole buffer behind is dropped, and its stream
// ends so it can re-list and subscribe again, as the kubelet does.
package events

import (
	"sync"
	"time"
)

// Type is what happened, valued as the CRI ContainerEventType.
type Type int

// The event types.
const (
	Created Type = 0
	Started Type = 1
	Stopped Type = 2
	Deleted Type = 3
)

func (t Type) String() string {
	switch t {
	case Created:
		return "created"
	case Started:
		return "started"
	case Stopped:
		return "stopped"
	case Deleted:
		return "deleted"
	}
	return "unknown"
}

// Event is one lifecycle change of a container or a pod sandbox (then
// ContainerID is the sandbox's id, as containerd reports it).
type Event struct {
	ContainerID string
	SandboxID   string
	Type        Type
	Time        time.Time
}

// DefaultBuffer is how many events a subscriber may lag behind.
const DefaultBuffer = 1024

// Broker distributes events.
type Broker struct {
	mu      sync.Mutex
	subs    map[*Subscription]struct{}
	dropped uint64
}

// New returns an empty Broker.
func New() *Broker { return &Broker{subs: map[*Subscription]struct{}{}} }

// Subscription is one subscriber's queue.
type Subscription struct {
	C      <-chan Event // closed when the subscription ends
	c      chan Event
	b      *Broker
	once   sync.Once
	Lagged bool // set when the broker dropped it for falling behind
}

// Subscribe adds a subscriber with room for buffer events.
func (b *Broker) Subscribe(buffer int) *Subscription {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	c := make(chan Event, buffer)
	s := &Subscription{C: c, c: c, b: b}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.b.mu.Lock()
	s.closeLocked()
	s.b.mu.Unlock()
}

func (s *Subscription) closeLocked() {
	s.once.Do(func() {
		delete(s.b.subs, s)
		close(s.c)
	})
}

// Subscribers is the number of live subscriptions.
func (b *Broker) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Dropped is how many subscribers were dropped for falling behind.
func (b *Broker) Dropped() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}

// Publish queues e for every subscriber without waiting for any.
func (b *Broker) Publish(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.c <- e:
		default:
			s.Lagged = true
			b.dropped++
			s.closeLocked()
		}
	}
}
