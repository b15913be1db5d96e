package sandbox

import "testing"

func TestPauseOOMScore(t *testing.T) {
	for _, tt := range []struct{ own, want int }{
		{-999, -998}, // the systemd unit's -999: pause just above it
		{-1000, -998},
		{0, 0}, // no CAP_SYS_RESOURCE and a daemon at 0: clamped
		{-500, -500},
		{300, 300},
	} {
		if got := pauseOOMScore(tt.own); got != tt.want {
			t.Errorf("pauseOOMScore(%d) = %d, want %d", tt.own, got, tt.want)
		}
	}
}
