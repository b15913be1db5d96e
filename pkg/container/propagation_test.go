package container

import (
	"errors"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const testMountInfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /srv rw shared:7 - tmpfs tmpfs rw
31 22 0:26 / /priv rw - tmpfs tmpfs rw
32 31 0:27 / /priv/slave rw master:9 - tmpfs tmpfs rw
33 22 0:28 / /with\040space rw - tmpfs tmpfs rw
`

// parseMountInfo reads mountinfo text as the daemon's readMountInfo would.
func parseMountInfo(t *testing.T, text string) []*mountinfo.Info {
	t.Helper()
	mounts, err := mountinfo.GetMountsFromReader(strings.NewReader(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	return mounts
}

func TestSourcePropagation(t *testing.T) {
	for _, tc := range []struct {
		path          string
		shared, slave bool
	}{
		{"/srv/data", true, false},
		{"/srv", true, false},
		{"/srvx", true, false}, // under /, not /srv
		{"/priv/x", false, false},
		{"/priv/slave/x", false, true},
		{"/with space/x", false, false},
		{"/other", true, false},
	} {
		shared, slave := sourcePropagation(parseMountInfo(t, testMountInfo), tc.path)
		if shared != tc.shared || slave != tc.slave {
			t.Errorf("%s: shared %v slave %v, want %v %v", tc.path, shared, slave, tc.shared, tc.slave)
		}
	}
}

func TestApplyPropagation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mounts []Mount
		want   string
		err    bool
	}{
		{"none", []Mount{{ContainerPath: "/a", HostPath: "/srv/a"}}, "", false},
		{"rslave", []Mount{{ContainerPath: "/a", HostPath: "/srv/a", Propagation: PropagationHostToContainer}}, "rslave", false},
		{"rslave from slave", []Mount{{ContainerPath: "/a", HostPath: "/priv/slave/a", Propagation: PropagationHostToContainer}}, "rslave", false},
		{"rshared wins", []Mount{
			{ContainerPath: "/a", HostPath: "/srv/a", Propagation: PropagationBidirectional},
			{ContainerPath: "/b", HostPath: "/srv/b", Propagation: PropagationHostToContainer},
		}, "rshared", false},
		{"rshared from private", []Mount{{ContainerPath: "/a", HostPath: "/priv/a", Propagation: PropagationBidirectional}}, "", true},
		{"rshared from slave", []Mount{{ContainerPath: "/a", HostPath: "/priv/slave/a", Propagation: PropagationBidirectional}}, "", true},
		{"rslave from private", []Mount{{ContainerPath: "/a", HostPath: "/priv/a", Propagation: PropagationHostToContainer}}, "", true},
	} {
		s := &specs.Spec{Linux: &specs.Linux{}}
		err := applyPropagation(s, tc.mounts, parseMountInfo(t, testMountInfo))
		if tc.err {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: err %v, want ErrInvalid", tc.name, err)
			}
			continue
		}
		if err != nil || s.Linux.RootfsPropagation != tc.want {
			t.Errorf("%s: rootfsPropagation %q err %v, want %q", tc.name, s.Linux.RootfsPropagation, err, tc.want)
		}
	}
}
