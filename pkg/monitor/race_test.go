//go:build race

package monitor

// The race detector multiplies memory use, so memory figures mean nothing.
const raceEnabled = true
