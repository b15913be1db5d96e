package container

import (
	"errors"
	"testing"
)

func TestValidate(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"empty", Config{}, false},
		{"group without user", Config{Security: Security{RunAsGroup: i64(1004)}}, true},
		{"uid and group", Config{Security: Security{RunAsUser: i64(1003), RunAsGroup: i64(1004)}}, false},
		{"username and group", Config{Security: Security{RunAsUsername: "www-data", RunAsGroup: i64(1004)}}, false},
		{"uid 0 and group", Config{Security: Security{RunAsUser: i64(0), RunAsGroup: i64(0)}}, false},
		{"rro read-only private", Config{Mounts: []Mount{{ContainerPath: "/mnt", HostPath: "/tmp", Readonly: true, RecursiveReadonly: true}}}, false},
		{"rro read-write", Config{Mounts: []Mount{{ContainerPath: "/mnt", HostPath: "/tmp", RecursiveReadonly: true}}}, true},
		{"rro host-to-container", Config{Mounts: []Mount{{ContainerPath: "/mnt", HostPath: "/tmp", Readonly: true, RecursiveReadonly: true, Propagation: PropagationHostToContainer}}}, true},
		{"rro bidirectional", Config{Mounts: []Mount{{ContainerPath: "/mnt", HostPath: "/tmp", Readonly: true, RecursiveReadonly: true, Propagation: PropagationBidirectional}}}, true},
		{"image volume read-only", Config{Mounts: []Mount{{ContainerPath: "/img", Image: "busybox", Readonly: true}}}, false},
		{"image volume read-write", Config{Mounts: []Mount{{ContainerPath: "/img", Image: "busybox"}}}, true},
		{"read-write without rro", Config{Mounts: []Mount{{ContainerPath: "/mnt", HostPath: "/tmp"}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validate(&tt.cfg)
			if tt.wantErr != (err != nil) {
				t.Fatalf("validate = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("validate = %v, want ErrInvalid (InvalidArgument)", err)
			}
		})
	}
}
