package container

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReadUserDBRefusesNonRegular: the image's /etc/passwd is read inside
// the rootfs and only as a regular file; a FIFO (which would block an
// open), a device, a symlink (to the host's) or an oversized file is a
// clear InvalidArgument at once.
func TestReadUserDBRefusesNonRegular(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make device nodes")
	}
	tests := []struct {
		name    string
		make    func(t *testing.T, etc string)
		want    string
		wantErr string
	}{
		{"regular", func(t *testing.T, etc string) { write(t, filepath.Join(etc, "passwd"), "root:x:0:0::/:/bin/sh\n") }, "root:x:0:0::/:/bin/sh\n", ""},
		{"missing", func(t *testing.T, etc string) {}, "", ""},
		{"fifo", func(t *testing.T, etc string) { must(t, unix.Mkfifo(filepath.Join(etc, "passwd"), 0o644)) }, "", "is a FIFO"},
		{"device", func(t *testing.T, etc string) {
			must(t, unix.Mknod(filepath.Join(etc, "passwd"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 5))))
		}, "", "is a device node"},
		{"symlink to the host's", func(t *testing.T, etc string) { must(t, os.Symlink("/etc/passwd", filepath.Join(etc, "passwd"))) }, "", "is a symlink"},
		{"too big", func(t *testing.T, etc string) {
			write(t, filepath.Join(etc, "passwd"), strings.Repeat("x", maxUserDBBytes+1))
		}, "", "is over"},
		{"etc symlinked inside the image", func(t *testing.T, etc string) {
			must(t, os.Remove(etc))
			must(t, os.MkdirAll(filepath.Join(filepath.Dir(etc), "real"), 0o755))
			write(t, filepath.Join(filepath.Dir(etc), "real", "passwd"), "inside\n")
			must(t, os.Symlink("/real", etc))
		}, "inside\n", ""},
		{"etc symlinked to the host's", func(t *testing.T, etc string) {
			must(t, os.Remove(etc))
			must(t, os.Symlink("../../../../../../etc", etc))
		}, "", "symlinks inside the image"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rootfs := t.TempDir()
			etc := filepath.Join(rootfs, "etc")
			must(t, os.Mkdir(etc, 0o755))
			tc.make(t, etc)
			start := time.Now()
			got, err := readUserDB(rootfs, "passwd")
			if d := time.Since(start); d > time.Second {
				t.Errorf("took %v", d)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func write(t *testing.T, p, s string) {
	t.Helper()
	must(t, os.WriteFile(p, []byte(s), 0o644))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
