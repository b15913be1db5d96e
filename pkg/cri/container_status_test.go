package cri

import (
	"testing"

	"github.com/pod-shim/pod-shim/pkg/container"
)

func TestStatusMountsImageRef(t *testing.T) {
	got := statusMounts([]container.Mount{
		{ContainerPath: "/data", HostPath: "/var/data", Readonly: true},
		{ContainerPath: "/img", Readonly: true, Image: "gcr.io/x/test-image:1", ImageSubPath: "etc", ImageRef: "sha256:1234"},
	})
	if len(got) != 2 {
		t.Fatalf("%d mounts, want 2", len(got))
	}
	if got[0].GetImage() != nil || got[0].GetHostPath() != "/var/data" || !got[0].GetReadonly() {
		t.Errorf("host path mount reported as %v", got[0])
	}
	img := got[1].GetImage()
	if img.GetImage() != "gcr.io/x/test-image:1" || img.GetImageRef() != "sha256:1234" || got[1].GetImageSubPath() != "etc" {
		t.Errorf("image volume reported as %v, want image, image_ref sha256:1234 and sub path", got[1])
	}
}
