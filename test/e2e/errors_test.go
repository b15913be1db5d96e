package e2e

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

// TestBadInput is issue 2's acceptance item 4: each malformed or impossible
// request gets the right gRPC code promptly and leaves nothing behind.
func TestBadInput(t *testing.T) {
	requireHost(t)
	reg, ref := registry(t)
	d := startDaemon(t)
	rs, is := d.Client()
	d.Crictl("pull", ref) // so ListImages has something that must stay unchanged

	goodPod := &cri.PodSandboxConfig{
		Metadata:     &cri.PodSandboxMetadata{Name: "bad-" + harness.RandHex(3), Namespace: "e2e", Uid: harness.RandHex(16)},
		LogDirectory: d.LogDir,
		Linux:        &cri.LinuxPodSandboxConfig{},
	}
	noMeta := &cri.PodSandboxConfig{LogDirectory: d.LogDir, Linux: &cri.LinuxPodSandboxConfig{}}
	unknownID := harness.RandHex(32)

	tests := []struct {
		name  string
		call  func(ctx context.Context) error
		codes []codes.Code // acceptable codes
		msg   string       // the message must mention this, when set
	}{
		{
			name: "RunPodSandbox without metadata",
			call: func(ctx context.Context) error {
				_, err := rs.RunPodSandbox(ctx, &cri.RunPodSandboxRequest{Config: noMeta})
				return err
			},
			codes: []codes.Code{codes.InvalidArgument},
		},
		{
			name: "CreateContainer for an unknown sandbox",
			call: func(ctx context.Context) error {
				_, err := rs.CreateContainer(ctx, &cri.CreateContainerRequest{
					PodSandboxId:  unknownID,
					Config:        &cri.ContainerConfig{Metadata: &cri.ContainerMetadata{Name: "c"}, Image: &cri.ImageSpec{Image: ref}, Command: []string{"true"}},
					SandboxConfig: goodPod,
				})
				return err
			},
			codes: []codes.Code{codes.NotFound},
		},
		{
			name: "PullImage of a missing image on the test registry",
			call: func(ctx context.Context) error {
				_, err := is.PullImage(ctx, &cri.PullImageRequest{Image: &cri.ImageSpec{Image: reg.Addr + "/nothere-" + harness.RandHex(3) + ":1"}})
				return err
			},
			codes: []codes.Code{codes.NotFound, codes.Unknown},
			msg:   "nothere-",
		},
		{
			name: "PullImage from a registry that does not exist",
			call: func(ctx context.Context) error {
				_, err := is.PullImage(ctx, &cri.PullImageRequest{Image: &cri.ImageSpec{Image: "127.0.0.1:1/busybox:1"}})
				return err
			},
			msg: "127.0.0.1:1",
		},
		{
			name: "StartContainer of an unknown id",
			call: func(ctx context.Context) error {
				_, err := rs.StartContainer(ctx, &cri.StartContainerRequest{ContainerId: unknownID})
				return err
			},
			codes: []codes.Code{codes.NotFound},
		},
		{
			name: "PullImage of a malformed reference",
			call: func(ctx context.Context) error {
				_, err := is.PullImage(ctx, &cri.PullImageRequest{Image: &cri.ImageSpec{Image: "UPPER::bad"}})
				return err
			},
			codes: []codes.Code{codes.InvalidArgument},
		},
	}

	before := d.hostState(t, rs, is)
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			// The bound only turns a hang into a failure; the elapsed time is logged.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			err := tc.call(ctx)
			t.Logf("%s: %v after %v", tc.name, err, time.Since(start).Round(time.Millisecond))
			switch st, _ := status.FromError(err); {
			case err == nil:
				t.Errorf("%s succeeded, want an error", tc.name)
			case errors.Is(ctx.Err(), context.DeadlineExceeded):
				t.Errorf("%s did not return within 30s", tc.name)
			case len(tc.codes) > 0 && !slices.Contains(tc.codes, st.Code()):
				t.Errorf("%s: code %s (%q), want one of %v", tc.name, st.Code(), st.Message(), tc.codes)
			case st.Code() == codes.OK || st.Code() == codes.Internal && strings.Contains(st.Message(), "panic"):
				t.Errorf("%s: code %s (%q)", tc.name, st.Code(), st.Message())
			case tc.msg != "" && !strings.Contains(st.Message(), tc.msg):
				t.Errorf("%s: message %q does not name %q", tc.name, st.Message(), tc.msg)
			}
			if after := d.hostState(t, rs, is); !slices.Equal(before, after) {
				t.Errorf("%s left something behind:\n  before %v\n  after  %v", tc.name, before, after)
			}
		})
	}
}

// hostState is what a bad request must not change: the CRI lists and the host
// objects of this daemon (runc containers, mounts, IP allocations, veths).
func (d *daemon) hostState(t *testing.T, rs cri.RuntimeServiceClient, is cri.ImageServiceClient) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []string
	pods, err := rs.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{})
	if err != nil {
		t.Fatalf("ListPodSandbox: %v", err)
	}
	for _, p := range pods.Items {
		out = append(out, "pod "+p.Id+" "+p.State.String())
	}
	ctrs, err := rs.ListContainers(ctx, &cri.ListContainersRequest{})
	if err != nil {
		t.Fatalf("ListContainers: %v", err)
	}
	for _, c := range ctrs.Containers {
		out = append(out, "container "+c.Id+" "+c.State.String())
	}
	imgs, err := is.ListImages(ctx, &cri.ListImagesRequest{})
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	for _, i := range imgs.Images {
		out = append(out, "image "+i.Id+" "+strings.Join(i.RepoTags, ","))
	}
	list, err := d.RuncList()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		out = append(out, "runc "+c.ID)
	}
	for _, m := range harness.MountsUnder(d.Base) {
		out = append(out, "mount "+m)
	}
	for _, a := range d.IPAMAllocations() {
		out = append(out, "ip "+a)
	}
	for _, v := range d.VethsOnBridge() {
		out = append(out, "veth "+v)
	}
	slices.Sort(out)
	return out
}
