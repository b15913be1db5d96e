package streaming

import (
	"context"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

func TestFirstSize(t *testing.T) {
	sized := make(chan remotecommand.TerminalSize, 1)
	sized <- remotecommand.TerminalSize{Width: 80, Height: 24}
	if got := firstSize(context.Background(), sized, time.Minute); got == nil || *got != (specs.Box{Width: 80, Height: 24}) {
		t.Fatalf("firstSize = %v, want 80x24", got)
	}
	closed := make(chan remotecommand.TerminalSize)
	close(closed)
	zero := make(chan remotecommand.TerminalSize, 1)
	zero <- remotecommand.TerminalSize{}
	for name, ch := range map[string]chan remotecommand.TerminalSize{"closed": closed, "zero": zero} {
		if got := firstSize(context.Background(), ch, time.Minute); got != nil {
			t.Errorf("%s: firstSize = %v, want nil", name, got)
		}
	}
	if got := firstSize(context.Background(), nil, time.Minute); got != nil {
		t.Errorf("no resize channel: firstSize = %v, want nil", got)
	}
	// A client that sends no size waits the bound, no more.
	begin := time.Now()
	if got := firstSize(context.Background(), make(chan remotecommand.TerminalSize), 10*time.Millisecond); got != nil || time.Since(begin) > 5*time.Second {
		t.Errorf("silent client: firstSize = %v after %s", got, time.Since(begin))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := firstSize(ctx, make(chan remotecommand.TerminalSize), time.Minute); got != nil {
		t.Errorf("cancelled session: firstSize = %v", got)
	}
}
