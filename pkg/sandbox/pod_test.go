package sandbox

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeContainers records what pod-level Stop and Remove ask of the
// containers, and what the pod's monitor had done by then.
type fakeContainers struct {
	mu      sync.Mutex
	ids     map[string][]string // by sandbox id
	calls   []string
	failOn  string
	monitor func() *fakeMonitor
}

func (f *fakeContainers) InPod(sandboxID string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ids[sandboxID]), nil
}

func (f *fakeContainers) record(call string) error {
	if mon := f.monitor(); mon != nil {
		if kills, _ := mon.counts(); kills != 0 {
			call += " after pause"
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	if call == f.failOn {
		return errors.New("container failed")
	}
	return nil
}

func (f *fakeContainers) Stop(ctx context.Context, id string, timeout time.Duration) error {
	if timeout != 0 {
		return errors.New("pod stop must kill at once")
	}
	return f.record("stop " + id)
}

func (f *fakeContainers) Remove(ctx context.Context, id string) error {
	return f.record("remove " + id)
}

func TestPodStopAndRemoveTakeContainersFirst(t *testing.T) {
	tests := []struct {
		name      string
		op        func(m *Manager, id string) error
		failOn    string
		wantCalls []string
		wantErr   bool
		wantGone  bool
	}{
		{
			name:      "stop stops every container before pause",
			op:        func(m *Manager, id string) error { return m.Stop(context.Background(), id) },
			wantCalls: []string{"stop a", "stop b"},
		},
		{
			name:      "remove removes every container before pause",
			op:        func(m *Manager, id string) error { return m.Remove(context.Background(), id) },
			wantCalls: []string{"remove a", "remove b"},
			wantGone:  true,
		},
		{
			name:      "a container that will not stop keeps the pod",
			op:        func(m *Manager, id string) error { return m.Stop(context.Background(), id) },
			failOn:    "stop a",
			wantCalls: []string{"stop a"},
			wantErr:   true,
		},
		{
			name:      "a container that will not go keeps the pod",
			op:        func(m *Manager, id string) error { return m.Remove(context.Background(), id) },
			failOn:    "remove a",
			wantCalls: []string{"remove a"},
			wantErr:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t, nil)
			sb := env.run(t, "web")
			cs := &fakeContainers{
				ids:     map[string][]string{sb.ID: {"a", "b"}},
				failOn:  tt.failOn,
				monitor: func() *fakeMonitor { return env.monitors.of(sb.Dir) },
			}
			env.m.SetContainers(cs)
			err := tt.op(env.m, sb.ID[:12])
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !slices.Equal(cs.calls, tt.wantCalls) {
				t.Fatalf("calls = %q, want %q", cs.calls, tt.wantCalls)
			}
			rec := env.stored(t, sb.ID)
			switch {
			case tt.wantGone && rec != nil:
				t.Fatalf("record left: %+v", rec)
			case !tt.wantGone && rec == nil:
				t.Fatal("record gone")
			case tt.wantErr && rec.State != StateReady:
				t.Fatalf("a failed pod stop changed the pod to %s", rec.State)
			}
		})
	}
}
