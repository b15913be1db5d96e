package sandbox

import (
	"context"
	"errors"
	"os"
	"testing"
)

// A Run that fails part-way leaves nothing behind: no record, no pod dir,
// no pinned netns, no monitor, the address released when one was given,
// and the name free for the kubelet's retry.
func TestRunFailureUndoesEverything(t *testing.T) {
	tests := []struct {
		name          string
		setupErr      error
		startErr      error
		hostNet       bool
		wantTeardowns int
		wantResult    bool // the teardown carries the ADD's result
	}{
		{name: "CNI ADD fails", setupErr: errors.New("plugin failed"), wantTeardowns: 1},
		{name: "monitor fails to start after CNI ADD", startErr: errors.New("no monitor"), wantTeardowns: 1, wantResult: true},
		{name: "host-network pod's monitor fails", startErr: errors.New("no monitor"), hostNet: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t, nil)
			env.net.setupErr = tt.setupErr
			env.monitors.startErr = tt.startErr
			cfg := podConfig("fails")
			if tt.hostNet {
				cfg.Namespaces.Network = ModeNode
			}
			if _, err := env.m.Run(context.Background(), cfg); err == nil {
				t.Fatal("Run succeeded")
			}
			all, err := env.m.List(Filter{})
			if err != nil || len(all) != 0 {
				t.Fatalf("List = %v, %v; want nothing", all, err)
			}
			var ids []string
			for id, n := range env.net.teardowns {
				ids = append(ids, id)
				if len(n) != tt.wantTeardowns {
					t.Fatalf("%d teardowns, want %d", len(n), tt.wantTeardowns)
				}
				if got := n[0] != nil; got != tt.wantResult {
					t.Fatalf("teardown carried a result: %v, want %v", got, tt.wantResult)
				}
			}
			if len(ids) == 0 && tt.wantTeardowns > 0 {
				t.Fatal("the network was never torn down")
			}
			if env.net.pinned() != 0 {
				t.Fatal("netns left pinned")
			}
			entries, _ := os.ReadDir(env.m.opts.StateDir + "/pods")
			if len(entries) != 0 {
				t.Fatalf("pod dirs left: %v", entries)
			}
			env.net.setupErr, env.monitors.startErr = nil, nil
			if _, err := env.m.Run(context.Background(), cfg); err != nil {
				t.Fatalf("retry with the same name: %v", err)
			}
		})
	}
}
