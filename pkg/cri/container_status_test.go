package cri

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

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

// The kubelet sends the image id with the pod spec's name beside it, and
// waits for that name in the container's status after an image change
// (e2e_node "Containers Lifecycle … image updated"); crictl sends a name only.
func TestStatusImageIsTheUserSpecifiedName(t *testing.T) {
	for _, tc := range []struct {
		name        string
		req         *runtimeapi.ImageSpec
		wantImage   string
		wantUserImg string
	}{
		{"kubelet", &runtimeapi.ImageSpec{Image: "sha256:e6530a6a7ddc", UserSpecifiedImage: "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"},
			"registry.k8s.io/e2e-test-images/busybox:1.37.0-2", "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"},
		{"crictl", &runtimeapi.ImageSpec{Image: "busybox:1.36"}, "busybox:1.36", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := containerConfig(&runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: tc.req})
			got := statusImage(&cfg)
			if got.Image != tc.wantImage || got.UserSpecifiedImage != tc.wantUserImg {
				t.Errorf("status image = %+v, want image %q user-specified %q", got, tc.wantImage, tc.wantUserImg)
			}
			if cfg.Image != tc.req.Image {
				t.Errorf("the id to run was lost: %q", cfg.Image)
			}
		})
	}
}
