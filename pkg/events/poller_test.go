package events

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

// fakeSource is a settable view of the store.
type fakeSource struct {
	mu         sync.Mutex
	sandboxes  []Object
	containers []Object
}

func (f *fakeSource) set(sandboxes, containers []Object) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sandboxes, f.containers = sandboxes, containers
}

func (f *fakeSource) Sandboxes() ([]Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sandboxes), nil
}

func (f *fakeSource) Containers() ([]Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.containers), nil
}

func pod(step Step) Object            { return Object{ID: "p", SandboxID: "p", Step: step} }
func ctr(id string, step Step) Object { return Object{ID: id, SandboxID: "p", Step: step} }

func TestPollerDiff(t *testing.T) {
	type state struct{ sandboxes, containers []Object }
	tests := []struct {
		name string
		from state
		to   state
		want []string // "id type", in order where the order is defined
	}{
		{"nothing changed", state{[]Object{pod(StepStarted)}, nil}, state{[]Object{pod(StepStarted)}, nil}, nil},
		{"pod ready", state{}, state{[]Object{pod(StepStarted)}, nil}, []string{"p created", "p started"}},
		{"pod being created is not shown", state{}, state{[]Object{pod(StepNone)}, nil}, nil},
		{"pod appears before its container",
			state{}, state{[]Object{pod(StepStarted)}, []Object{ctr("a", StepCreated)}},
			[]string{"p created", "p started", "a created"}},
		{"created and started between two diffs",
			state{[]Object{pod(StepStarted)}, []Object{ctr("a", StepCreated)}},
			state{[]Object{pod(StepStarted)}, []Object{ctr("a", StepStarted)}},
			[]string{"a started"}},
		{"exited",
			state{[]Object{pod(StepStarted)}, []Object{ctr("a", StepStarted)}},
			state{[]Object{pod(StepStarted)}, []Object{ctr("a", StepStopped)}},
			[]string{"a stopped"}},
		{"quick exit then remove still reports the stop",
			state{[]Object{pod(StepStarted)}, []Object{ctr("a", StepStarted)}},
			state{[]Object{pod(StepStarted)}, nil},
			[]string{"a stopped", "a deleted"}},
		{"removed after its stop was seen",
			state{[]Object{pod(StepStarted)}, []Object{ctr("a", StepStopped)}},
			state{[]Object{pod(StepStarted)}, nil},
			[]string{"a deleted"}},
		{"pod goes after its container",
			state{[]Object{pod(StepStopped)}, []Object{ctr("a", StepStopped)}},
			state{},
			[]string{"a deleted", "p deleted"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &fakeSource{}
			b := New()
			sub := b.Subscribe(64)
			defer sub.Close()
			p := NewPoller(b, src, nil)
			src.set(tt.from.sandboxes, tt.from.containers)
			p.Reconcile() // baseline: publishes nothing
			src.set(tt.to.sandboxes, tt.to.containers)
			p.Reconcile()
			var got []string
			for len(sub.C) > 0 {
				e := <-sub.C
				got = append(got, fmt.Sprintf("%s %s", e.ContainerID, e.Type))
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("events = %q, want %q", got, tt.want)
			}
		})
	}
}

// With nobody listening the poller keeps no snapshot, so a new subscriber
// is not sent what happened before it came.
func TestPollerBaselinePerSubscriber(t *testing.T) {
	src := &fakeSource{}
	b := New()
	p := NewPoller(b, src, nil)
	src.set([]Object{pod(StepStarted)}, nil)
	p.Reconcile()
	sub := b.Subscribe(8)
	defer sub.Close()
	p.Reconcile() // the subscriber's baseline
	src.set([]Object{pod(StepStarted)}, []Object{ctr("a", StepCreated)})
	p.Reconcile()
	if n := len(sub.C); n != 1 {
		t.Fatalf("%d events, want only a's creation", n)
	}
	if e := <-sub.C; e.ContainerID != "a" || e.Type != Created {
		t.Fatalf("event = %+v", e)
	}
}
