package container

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pod-shim/pod-shim/pkg/runc"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
	"github.com/pod-shim/pod-shim/pkg/store"
)

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// run acts on a fresh env and returns the container to check.
		run       func(e *env) (id string, err error)
		wantErr   error
		wantState State
		wantCode  int32
		reason    string
		gone      bool
	}{
		{
			name:      "create",
			run:       func(e *env) (string, error) { return e.create("a").ID, nil },
			wantState: StateCreated,
		},
		{
			name:      "start",
			run:       func(e *env) (string, error) { return e.running("a").ID, nil },
			wantState: StateRunning,
		},
		{
			name: "start twice",
			run: func(e *env) (string, error) {
				c := e.running("a")
				return c.ID, e.m.Start(ctx, c.ID)
			},
			wantErr: ErrState, wantState: StateRunning,
		},
		{
			name: "start fails: exited 128 StartError",
			run: func(e *env) (string, error) {
				e.mon.createErr = errors.New("exec format error")
				c := e.create("a")
				return c.ID, e.m.Start(ctx, c.ID)
			},
			wantErr: nil, wantState: StateExited, wantCode: 128, reason: "StartError",
		},
		{
			name: "stop with grace",
			run: func(e *env) (string, error) {
				c := e.running("a")
				return c.ID, e.m.Stop(ctx, c.ID, time.Minute)
			},
			wantState: StateExited, wantCode: 128 + int32(syscall.SIGTERM), reason: "Error",
		},
		{
			name: "stop ignoring SIGTERM is killed",
			run: func(e *env) (string, error) {
				e.mon.ignoreTERM = true
				c := e.running("a")
				return c.ID, e.m.Stop(ctx, c.ID, 10*time.Millisecond)
			},
			wantState: StateExited, wantCode: 128 + int32(syscall.SIGKILL), reason: "Error",
		},
		{
			name: "exit on its own is seen by Get",
			run: func(e *env) (string, error) {
				c := e.running("a")
				e.mon.exit(c.ID, 0)
				_, err := e.m.Get(c.ID)
				return c.ID, err
			},
			wantState: StateExited, wantCode: 0, reason: "Completed",
		},
		{
			name: "stop without the pod's monitor goes through runc",
			run: func(e *env) (string, error) {
				c := e.running("a")
				e.sbs.noMon = true
				return c.ID, e.m.Stop(ctx, c.ID, 0)
			},
			wantState: StateExited, wantCode: 137, reason: "Error",
		},
		{
			name: "stop of an unknown container succeeds",
			run: func(e *env) (string, error) {
				id := store.NewID()
				return id, e.m.Stop(ctx, id, 0)
			},
			gone: true,
		},
		{
			name: "remove a running container",
			run: func(e *env) (string, error) {
				c := e.running("a")
				return c.ID, e.m.Remove(ctx, c.ID)
			},
			gone: true,
		},
		{
			name: "remove twice",
			run: func(e *env) (string, error) {
				c := e.create("a")
				if err := e.m.Remove(ctx, c.ID); err != nil {
					return c.ID, err
				}
				return c.ID, e.m.Remove(ctx, c.ID)
			},
			gone: true,
		},
		{
			name: "create in a pod that is not ready",
			run: func(e *env) (string, error) {
				e.sbs.pods[e.pod.ID].State = sandbox.StateNotReady
				_, err := e.m.Create(ctx, e.pod.ID, Config{Name: "a", Image: "busybox"})
				return "", err
			},
			wantErr: sandbox.ErrNotReady, gone: true,
		},
		{
			name: "create with a name in use",
			run: func(e *env) (string, error) {
				e.create("a")
				_, err := e.m.Create(ctx, e.pod.ID, Config{Name: "a", Image: "busybox"})
				return "", err
			},
			wantErr: ErrAlreadyExists, gone: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			id, err := tt.run(e)
			if tt.wantErr == nil && err != nil && tt.reason != "StartError" {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if id == "" {
				return
			}
			got := e.stored(id)
			if tt.gone {
				if got != nil {
					t.Fatalf("record left: %s", got.State)
				}
				return
			}
			if got == nil {
				t.Fatal("no record")
			}
			if got.State != tt.wantState || got.ExitCode != tt.wantCode || got.Reason != tt.reason {
				t.Errorf("record %s/%d/%q, want %s/%d/%q", got.State, got.ExitCode, got.Reason, tt.wantState, tt.wantCode, tt.reason)
			}
			if n := e.m.locks.Len(); n != 0 {
				t.Errorf("%d container locks left", n)
			}
		})
	}
}

// TestExitToldOnce: however many lookups see an exit, the hooks and the
// OOM metric hear of it once, from the one lookup that records it.
func TestExitToldOnce(t *testing.T) {
	e := newEnv(t)
	c := e.running("a")
	e.mon.exit(c.ID, 1)
	for i := 0; i < 3; i++ {
		if _, err := e.m.Get(c.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.List(Filter{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.m.Stop(context.Background(), c.ID, 0); err != nil {
		t.Fatal(err)
	}
	if n := e.hooks.count("StopContainer"); n != 1 {
		t.Errorf("StopContainer hook told %d times, want 1", n)
	}
}

func TestListFilters(t *testing.T) {
	e := newEnv(t)
	a := e.running("a")
	b := e.create("b")
	running := StateRunning
	prefixA := a.ID[:1]
	if a.ID[0] == b.ID[0] {
		prefixA = a.ID[:8]
	}
	tests := []struct {
		name    string
		f       Filter
		want    []string
		wantErr error
	}{
		{"all", Filter{}, []string{a.ID, b.ID}, nil},
		{"by id prefix", Filter{ID: prefixA}, []string{a.ID}, nil},
		{"unknown id", Filter{ID: "ffffffffffffff" + "0"}, nil, nil},
		{"by state", Filter{State: &running}, []string{a.ID}, nil},
		{"by pod", Filter{SandboxID: e.pod.ID}, []string{a.ID, b.ID}, nil},
		{"unknown pod", Filter{SandboxID: store.NewID()}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.m.List(tt.f)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			var ids []string
			for _, c := range got {
				ids = append(ids, c.ID)
			}
			if len(ids) != len(tt.want) {
				t.Fatalf("got %v, want %v", ids, tt.want)
			}
			for i := range ids {
				if ids[i] != tt.want[i] {
					t.Fatalf("got %v, want %v", ids, tt.want)
				}
			}
		})
	}
}

func TestListAmbiguousPrefix(t *testing.T) {
	e := newEnv(t)
	a := e.create("a")
	twin := *a
	twin.ID = a.ID[:8] + strings.Repeat("0", 56)
	if err := e.db.Put(bucket, twin.ID, &twin); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.List(Filter{ID: a.ID[:8]}); !errors.Is(err, ErrInvalid) || !errors.Is(err, store.ErrAmbiguous) {
		t.Fatalf("List by an ambiguous prefix: %v, want ErrInvalid and store.ErrAmbiguous", err)
	}
	if err := e.m.Stop(context.Background(), a.ID[:8], 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Stop by an ambiguous prefix: %v, want ErrInvalid", err)
	}
	if err := e.m.Remove(context.Background(), a.ID[:8]); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Remove by an ambiguous prefix: %v, want ErrInvalid", err)
	}
}

func TestRecover(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// leave puts a record in the state a crashed daemon left it.
		leave     func(e *env, c *Container)
		wantState State
		gone      bool
	}{
		{
			name:  "create interrupted: undone",
			leave: func(e *env, c *Container) { c.State = StateCreating },
			gone:  true,
		},
		{
			name: "start interrupted, runc runs it: running",
			leave: func(e *env, c *Container) {
				c.State = StateStarting
				e.rt.states[c.ID] = &runc.State{ID: c.ID, Pid: 99, Status: "running", Created: time.Now()}
			},
			wantState: StateRunning,
		},
		{
			name:      "start interrupted, runc does not know it: created",
			leave:     func(e *env, c *Container) { c.State = StateStarting },
			wantState: StateCreated,
		},
		{
			// The monitor deletes a container from runc when it
			// reaps its exit: the exit file is what is left.
			name: "start interrupted, it ran and exited: exited",
			leave: func(e *env, c *Container) {
				c.State = StateStarting
				e.mon.exit(c.ID, 3)
			},
			wantState: StateExited,
		},
		{
			name: "host restarted under a running container: exited",
			leave: func(e *env, c *Container) {
				c.State = StateRunning
				os.RemoveAll(e.pod.Dir)
			},
			wantState: StateExited,
		},
		{
			name: "exited while the daemon was down: exited",
			leave: func(e *env, c *Container) {
				c.State = StateRunning
				e.mon.exit(c.ID, 0)
			},
			wantState: StateExited,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			c := e.create("a")
			tt.leave(e, c)
			if err := e.db.Put(bucket, c.ID, c); err != nil {
				t.Fatal(err)
			}
			m := e.open()
			if err := m.Recover(ctx); err != nil {
				t.Fatalf("Recover: %v", err)
			}
			got := e.stored(c.ID)
			if tt.gone {
				if got != nil {
					t.Fatalf("record left: %s", got.State)
				}
				return
			}
			if got == nil || got.State != tt.wantState {
				t.Fatalf("record %+v, want state %s", got, tt.wantState)
			}
		})
	}
}

func TestRecoverIsCancellable(t *testing.T) {
	e := newEnv(t)
	c := e.create("a")
	c.State = StateStarting
	if err := e.db.Put(bucket, c.ID, c); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.open().Recover(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recover with a cancelled context: %v", err)
	}
	if got := e.stored(c.ID); got == nil || got.State != StateStarting {
		t.Fatalf("a cancelled Recover changed the record: %+v", got)
	}
}

// The manager is what pkg/sandbox takes down with a pod.
var _ sandbox.Containers = (*Manager)(nil)

func TestInPod(t *testing.T) {
	e := newEnv(t)
	a := e.running("a")
	b := e.create("b")
	ids, err := e.m.InPod(e.pod.ID)
	if err != nil || len(ids) != 2 || ids[0] != a.ID || ids[1] != b.ID {
		t.Fatalf("InPod = %v, %v; want [%s %s]", ids, err, a.ID, b.ID)
	}
	if ids, err := e.m.InPod(store.NewID()); err != nil || len(ids) != 0 {
		t.Fatalf("InPod of an unknown pod = %v, %v", ids, err)
	}
}
