package config

import (
	"os"
	"testing"
)

// deploy/config.toml is what operators copy; it must be exactly what
// `pod-shim config default` prints, or it drifts from the code.
func TestDeployConfigIsTheDefault(t *testing.T) {
	want, err := Default().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../deploy/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatal("deploy/config.toml differs from `pod-shim config default`; regenerate it with: go run ./cmd/pod-shim config default > deploy/config.toml")
	}
}
