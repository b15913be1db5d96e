package container

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

func TestValidateResources(t *testing.T) {
	tests := []struct {
		name    string
		r       *Resources
		wantErr bool
	}{
		{"nil", nil, false},
		{"memory.max", &Resources{Unified: map[string]string{"memory.max": "1000000"}}, false},
		{"three parts", &Resources{Unified: map[string]string{"memory.oom.group": "1", "io.bfq.weight": "100"}}, false},
		{"hugetlb unified", &Resources{Unified: map[string]string{"hugetlb.2MB.rsvd.max": "0"}}, false},
		{"cgroup.max.depth", &Resources{Unified: map[string]string{"cgroup.max.depth": "3"}}, false},
		{"slash", &Resources{Unified: map[string]string{"../../../../etc/shadow": "x"}}, true},
		{"dotdot", &Resources{Unified: map[string]string{"..": "x"}}, true},
		{"dot in the middle of a traversal", &Resources{Unified: map[string]string{"memory/../../x.max": "1"}}, true},
		{"no dot", &Resources{Unified: map[string]string{"memory": "1"}}, true},
		{"leading dot", &Resources{Unified: map[string]string{".max": "1"}}, true},
		{"trailing dot", &Resources{Unified: map[string]string{"memory.": "1"}}, true},
		{"empty", &Resources{Unified: map[string]string{"": "1"}}, true},
		{"space", &Resources{Unified: map[string]string{"memory. max": "1"}}, true},
		{"NUL in key", &Resources{Unified: map[string]string{"memory.max\x00": "1"}}, true},
		{"NUL in value", &Resources{Unified: map[string]string{"memory.max": "1\x00"}}, true},
		{"huge value", &Resources{Unified: map[string]string{"memory.max": strings.Repeat("9", 5000)}}, true},
		{"cgroup.procs", &Resources{Unified: map[string]string{"cgroup.procs": "1"}}, true},
		{"cgroup.kill", &Resources{Unified: map[string]string{"cgroup.kill": "1"}}, true},
		{"cgroup.subtree_control", &Resources{Unified: map[string]string{"cgroup.subtree_control": "+memory"}}, true},
		{"long key", &Resources{Unified: map[string]string{"memory." + strings.Repeat("a", 80): "1"}}, true},
		{"2MB", &Resources{HugepageLimits: map[string]uint64{"2MB": 1 << 21}}, false},
		{"1GB and 64KB", &Resources{HugepageLimits: map[string]uint64{"1GB": 0, "64KB": 0}}, false},
		{"hugepage traversal", &Resources{HugepageLimits: map[string]uint64{"2MB/../../../x": 1}}, true},
		{"hugepage dotdot", &Resources{HugepageLimits: map[string]uint64{"..": 1}}, true},
		{"hugepage lower case", &Resources{HugepageLimits: map[string]uint64{"2mb": 1}}, true},
		{"hugepage leading zero", &Resources{HugepageLimits: map[string]uint64{"02MB": 1}}, true},
		{"hugepage no unit", &Resources{HugepageLimits: map[string]uint64{"2097152": 1}}, true},
		{"hugepage empty", &Resources{HugepageLimits: map[string]uint64{"": 1}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateResources(tt.r)
			if (err != nil) != tt.wantErr {
				t.Fatalf("validateResources() = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			// CreateContainer goes through validate with the same verdict.
			if err := validate(&Config{Resources: tt.r}); (err != nil) != tt.wantErr {
				t.Fatalf("validate() = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

// A bad key among good ones still fails, and the message stays short.
func TestValidateResourcesClipsNames(t *testing.T) {
	long := strings.Repeat("../", 10000)
	err := validateResources(&Resources{Unified: map[string]string{"memory.max": "1", long: "x"}})
	if err == nil || len(err.Error()) > 300 {
		t.Fatalf("err = %.300v (len %d)", err, len(err.Error()))
	}
}

func TestValidateInSandbox(t *testing.T) {
	priv := &sandbox.Sandbox{ID: "p"}
	priv.Config.Privileged = true
	plain := &sandbox.Sandbox{ID: "q"}
	tests := []struct {
		name    string
		ctr     bool
		sb      *sandbox.Sandbox
		wantErr bool
	}{
		{"privileged in privileged", true, priv, false},
		{"privileged in unprivileged", true, plain, true},
		{"unprivileged in privileged", false, priv, false},
		{"unprivileged in unprivileged", false, plain, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &Config{Security: Security{Privileged: tt.ctr}}
			err := validateInSandbox(cfg, tt.sb)
			if (err != nil) != tt.wantErr {
				t.Fatalf("validateInSandbox() = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "no privileged container allowed in sandbox")) {
				t.Fatalf("error %v: want ErrInvalid and containerd's wording", err)
			}
		})
	}
}

// A container the kubelet asked nothing of gets 0, never the daemon's own
// oom_score_adj (-999 under its systemd unit) through runc's inheritance.
func TestBuildSpecOOMScoreAdjNotInherited(t *testing.T) {
	rootfs := rootfsWith(t, testPasswd, testGroup)
	sb := testSandbox(filepath.Join(t.TempDir(), "pod"))
	for _, tt := range []struct {
		name string
		res  *Resources
		min  int
		want int
	}{
		{"no resources, daemon at -999", nil, -999, 0},
		{"zero asked, daemon at -999", &Resources{}, -999, 0},
		{"guaranteed asks -997, daemon at -999", &Resources{OOMScoreAdj: -997}, -999, -997},
		{"guaranteed asks -997, daemon at 0 without CAP_SYS_RESOURCE", &Resources{OOMScoreAdj: -997}, 0, 0},
		{"besteffort asks 1000", &Resources{OOMScoreAdj: 1000}, -999, 1000},
		{"no resources, daemon at 300", nil, 300, 300},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &Config{Name: "c", Image: "sha256:abc", Command: []string{"/x"}, Resources: tt.res}
			s, err := buildSpec(specInput{ID: "c1", Config: cfg, Sandbox: sb, Image: img(nil, nil), Rootfs: rootfs, CgroupDriver: "cgroupfs", MinOOMScoreAdj: tt.min})
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Process.OOMScoreAdj; got == nil || *got != tt.want {
				t.Fatalf("oom_score_adj = %v, want %d", deref(got), tt.want)
			}
		})
	}
}
