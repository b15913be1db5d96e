package streaming

import (
	"errors"
	"testing"

	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

func TestDialTarget(t *testing.T) {
	pod := func(state sandbox.State, host bool, netns string) *sandbox.Sandbox {
		sb := &sandbox.Sandbox{ID: "p", State: state, NetNSPath: netns}
		if host {
			sb.Config.Namespaces.Network = sandbox.ModeNode
		}
		return sb
	}
	tests := []struct {
		name    string
		sb      *sandbox.Sandbox
		want    string
		wantErr error
	}{
		{"ready pod dials in its netns", pod(sandbox.StateReady, false, "/run/netns/x"), "/run/netns/x", nil},
		{"ready host-network pod dials the host", pod(sandbox.StateReady, true, ""), "", nil},
		{"stopped pod without netns is refused, not dialled on the host", pod(sandbox.StateNotReady, false, ""), "", sandbox.ErrNotReady},
		{"stopped pod with a stale netns path is refused", pod(sandbox.StateNotReady, false, "/run/netns/x"), "", sandbox.ErrNotReady},
		{"pod being created is refused", pod(sandbox.StateCreating, false, "/run/netns/x"), "", sandbox.ErrNotReady},
		{"ready pod without netns is refused", pod(sandbox.StateReady, false, ""), "", sandbox.ErrNotReady},
		{"stopped host-network pod is refused", pod(sandbox.StateNotReady, true, ""), "", sandbox.ErrNotReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dialTarget(tt.sb)
			if got != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("dialTarget = %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
