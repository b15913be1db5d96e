package streaming

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

// TestImageFsInfoContainerFs: ImageFsInfo reports the writable layers
// apart from the images, and a container writing 8 MiB shows up there.
func TestImageFsInfoContainerFs(t *testing.T) {
	requireHost(t)
	d := startDaemon(t)
	d.podWith("fs", "dd if=/dev/zero of=/blob bs=1M count=8 && sleep 100000")
	_, is := d.Client()
	harness.Eventually(t, "container filesystem counts the 8 MiB written", 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := is.ImageFsInfo(ctx, &cri.ImageFsInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.ImageFilesystems) != 1 || r.ImageFilesystems[0].UsedBytes.GetValue() == 0 {
			t.Fatalf("image filesystems %v", r.ImageFilesystems)
		}
		if len(r.ContainerFilesystems) != 1 {
			t.Fatalf("container filesystems %v", r.ContainerFilesystems)
		}
		c := r.ContainerFilesystems[0]
		// One disk here: both must name the same mountpoint, or the kubelet
		// would manage them as a split image/container disk.
		if mp := c.GetFsId().GetMountpoint(); !strings.HasPrefix(mp, d.Root) || mp != r.ImageFilesystems[0].GetFsId().GetMountpoint() {
			t.Fatalf("container filesystem mountpoint %q, want the image filesystem's %q (same device)", mp, r.ImageFilesystems[0].GetFsId().GetMountpoint())
		}
		if c.UsedBytes.GetValue() < 8<<20 || c.InodesUsed.GetValue() == 0 {
			return fmt.Errorf("container filesystem %v", c)
		}
		return nil
	})
}
