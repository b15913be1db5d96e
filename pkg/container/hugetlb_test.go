package container

import (
	"os"
	"path/filepath"
	"testing"
)

func TestHugetlbAvailable(t *testing.T) {
	v1Lines := func(root string, ctrls ...string) string {
		s := "31 23 0:28 / " + root + " rw,relatime - tmpfs tmpfs rw,mode=755\n"
		for i, c := range ctrls {
			s += "3" + string(rune('2'+i)) + " 31 0:29 / " + filepath.Join(root, c) + " rw,relatime - cgroup cgroup rw," + c + "\n"
		}
		return s + "41 31 0:38 / " + filepath.Join(root, "unified") + " rw,relatime - cgroup2 cgroup2 rw\n"
	}
	ptr := func(s string) *string { return &s }
	tests := []struct {
		name        string
		controllers *string // root's cgroup.controllers (pure v2); nil: none
		mountinfo   func(root string) string
		want        bool
	}{
		{"v1 without hugetlb (this CI host)", nil, func(r string) string { return v1Lines(r, "cpu", "memory", "pids") }, false},
		{"v1 with hugetlb", nil, func(r string) string { return v1Lines(r, "cpu", "memory", "hugetlb") }, true},
		{"v1 co-mounted hugetlb", nil, func(r string) string {
			return "32 31 0:29 / " + r + "/cpu,hugetlb rw - cgroup cgroup rw,cpu,hugetlb\n"
		}, true},
		{"v1 hugetlb mounted elsewhere", nil, func(r string) string {
			return v1Lines(r, "cpu") + "50 1 0:40 / /mnt/hugetlb rw - cgroup cgroup rw,hugetlb\n"
		}, false},
		{"v1 root prefix is not a parent", nil, func(r string) string {
			return "50 1 0:40 / " + r + "x/hugetlb rw - cgroup cgroup rw,hugetlb\n"
		}, false},
		{"v2 with hugetlb", ptr("cpuset cpu io memory hugetlb pids rdma misc\n"), func(string) string { return "" }, true},
		{"v2 without hugetlb", ptr("cpuset cpu io memory pids\n"), func(r string) string {
			// v1 lines are not consulted on a pure v2 host.
			return v1Lines(r, "hugetlb")
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.controllers != nil {
				if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte(*tt.controllers), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := hugetlbAvailable(tt.controllers != nil, root, parseMountInfo(t, tt.mountinfo(root))); got != tt.want {
				t.Errorf("hugetlbAvailable = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBuildSpecDropsHugepagesWithoutHugetlb(t *testing.T) {
	r := &Resources{HugepageLimits: map[string]uint64{"2MB": 1 << 21, "1GB": 0}}
	for _, noHugetlb := range []bool{false, true} {
		rootfs := rootfsWith(t, testPasswd, testGroup)
		sb := testSandbox(filepath.Join(t.TempDir(), "pod"))
		s, err := buildSpec(specInput{ID: "c", Config: &Config{Command: []string{"/x"}, Resources: r}, Sandbox: sb,
			Image: img(nil, nil), Rootfs: rootfs, CgroupDriver: "cgroupfs", NoHugetlb: noHugetlb})
		if err != nil {
			t.Fatal(err)
		}
		if got := len(s.Linux.Resources.HugepageLimits); (got == 0) != noHugetlb {
			t.Errorf("NoHugetlb=%v: %d hugepage limits in the spec", noHugetlb, got)
		}
	}
}
