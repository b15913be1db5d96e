package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pod-shim/pod-shim/pkg/network"
	"github.com/pod-shim/pod-shim/pkg/store"
)

// Recover on fakes: each record a crashed or rebooted daemon can leave,
// and what must become of it (see the assumptions atop recover.go).
func TestRecover(t *testing.T) {
	ip := &network.Result{IPs: []string{"10.88.0.9"}}
	tests := []struct {
		name string
		// state is the record as the previous daemon left it; dirExists
		// says whether its volatile pod dir survived.
		state     State
		hostNet   bool
		dirExists bool
		result    *network.Result

		wantRecord    bool
		wantState     State
		wantTeardowns int
		wantTornDown  bool
	}{
		{name: "interrupted Run is undone", state: StateCreating, dirExists: true, result: ip,
			wantRecord: false, wantTeardowns: 1},
		{name: "interrupted Run before its CNI result is undone too", state: StateCreating, dirExists: true,
			wantRecord: false, wantTeardowns: 1},
		{name: "live pod is left alone", state: StateReady, dirExists: true, result: ip,
			wantRecord: true, wantState: StateReady},
		{name: "pod lost to a reboot is not ready and gives its IP back", state: StateReady, result: ip,
			wantRecord: true, wantState: StateNotReady, wantTeardowns: 1, wantTornDown: true},
		{name: "stopped pod lost to a reboot gives its IP back", state: StateNotReady, result: ip,
			wantRecord: true, wantState: StateNotReady, wantTeardowns: 1, wantTornDown: true},
		{name: "host-network pod lost to a reboot has no IP to give", state: StateReady, hostNet: true,
			wantRecord: true, wantState: StateNotReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t, nil)
			id := store.NewID()
			cfg := podConfig("p")
			if tt.hostNet {
				cfg.Namespaces.Network = ModeNode
			}
			sb := &Sandbox{ID: id, Config: cfg, CreatedAt: time.Now(), State: tt.state,
				Dir: filepath.Join(env.m.opts.StateDir, "pods", id), Network: tt.result, PausePID: 4242}
			if !tt.hostNet {
				sb.NetNSPath = env.m.netnsPath(id)
				if _, err := env.net.CreateNetNS(filepath.Dir(sb.NetNSPath), id); err != nil {
					t.Fatal(err)
				}
			}
			if tt.dirExists {
				if err := os.MkdirAll(sb.Dir, 0o711); err != nil {
					t.Fatal(err)
				}
			}
			if err := env.db.Put(bucket, id, sb); err != nil {
				t.Fatal(err)
			}
			// A fresh manager, as at daemon start: it reserves the record's
			// name from the store.
			m, err := New(env.m.opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Recover(context.Background()); err != nil {
				t.Fatal(err)
			}
			rec := env.stored(t, id)
			if (rec != nil) != tt.wantRecord {
				t.Fatalf("record after Recover = %+v, want one: %v", rec, tt.wantRecord)
			}
			tds := env.net.teardownsOf(id)
			if len(tds) != tt.wantTeardowns {
				t.Fatalf("teardowns = %d, want %d", len(tds), tt.wantTeardowns)
			}
			if len(tds) == 1 && tds[0] != tt.result {
				if tds[0] == nil || tt.result == nil || tds[0].IPs[0] != tt.result.IPs[0] {
					t.Fatalf("teardown with %+v, want the recorded %+v", tds[0], tt.result)
				}
			}
			if !tt.wantRecord {
				if _, err := os.Stat(sb.Dir); !os.IsNotExist(err) {
					t.Fatalf("pod dir of an undone Run left: %v", err)
				}
				if env.net.pinned() != 0 {
					t.Fatal("netns of an undone Run left pinned")
				}
				// Its name is free again.
				if _, err := m.Run(context.Background(), cfg); err != nil {
					t.Fatalf("Run with the undone pod's name: %v", err)
				}
				return
			}
			if rec.State != tt.wantState || rec.NetworkTornDown != tt.wantTornDown {
				t.Fatalf("record = state %s, torn down %v; want %s, %v", rec.State, rec.NetworkTornDown, tt.wantState, tt.wantTornDown)
			}
			if tt.wantState == StateNotReady && rec.PausePID != 0 {
				t.Fatalf("a pod lost to a reboot keeps pause pid %d", rec.PausePID)
			}
		})
	}
}

// What a crash left between making a pod's dir or netns and recording it
// is swept; what a record names is not.
func TestRecoverSweepsUnrecorded(t *testing.T) {
	env := newTestEnv(t, nil)
	live := env.run(t, "live")
	orphan := store.NewID()
	dir := filepath.Join(env.m.opts.StateDir, "pods", orphan)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	if _, err := env.net.CreateNetNS(filepath.Dir(env.m.netnsPath(orphan)), orphan); err != nil {
		t.Fatal(err)
	}
	// The fake pins nothing on disk; the sweep reads the netns dir.
	if err := os.MkdirAll(filepath.Dir(env.m.netnsPath(orphan)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(env.m.netnsPath(orphan), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := env.m.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("unrecorded pod dir left: %v", err)
	}
	if env.net.pinned() != 1 {
		t.Fatalf("%d netns pinned, want only the live pod's", env.net.pinned())
	}
	if _, err := os.Stat(live.Dir); err != nil {
		t.Fatalf("live pod's dir swept: %v", err)
	}
	if rec := env.stored(t, live.ID); rec == nil || rec.State != StateReady {
		t.Fatalf("live pod = %+v", rec)
	}
}
