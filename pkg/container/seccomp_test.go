package container

import (
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestApplySeccompPrivileged(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "block-hostname.json")
	body := `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["sethostname"],"action":"SCMP_ACT_ERRNO"}]}`
	if err := os.WriteFile(prof, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		sec  Security
		want bool
	}{
		{"localhost", Security{Seccomp: &Profile{Type: ProfileLocalhost, LocalhostRef: prof}}, true},
		{"localhost privileged", Security{Privileged: true, Seccomp: &Profile{Type: ProfileLocalhost, LocalhostRef: prof}}, false},
		{"runtime default", Security{Seccomp: &Profile{Type: ProfileRuntimeDefault}}, true},
		{"runtime default privileged", Security{Privileged: true, Seccomp: &Profile{Type: ProfileRuntimeDefault}}, false},
		{"privileged with a missing file", Security{Privileged: true, Seccomp: &Profile{Type: ProfileLocalhost, LocalhostRef: "/nonexistent.json"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}, Linux: &specs.Linux{}}
			if err := applySeccomp(s, tt.sec); err != nil {
				t.Fatalf("applySeccomp: %v", err)
			}
			if got := s.Linux.Seccomp != nil; got != tt.want {
				t.Fatalf("seccomp set = %v, want %v", got, tt.want)
			}
		})
	}
}
