package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/pkg/container"
	"github.com/pod-shim/pod-shim/pkg/image"
	"github.com/pod-shim/pod-shim/pkg/network"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
	"github.com/pod-shim/pod-shim/pkg/store"
)

func TestToStatus(t *testing.T) {
	existing := status.Error(codes.ResourceExhausted, "too many")
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"sandbox not found", sandbox.ErrNotFound, codes.NotFound},
		{"container not found", container.ErrNotFound, codes.NotFound},
		{"image not found", image.ErrNotFound, codes.NotFound},
		{"store not found", store.ErrNotFound, codes.NotFound},
		{"sandbox already exists", sandbox.ErrAlreadyExists, codes.AlreadyExists},
		{"container already exists", container.ErrAlreadyExists, codes.AlreadyExists},
		{"sandbox invalid", sandbox.ErrInvalid, codes.InvalidArgument},
		{"container invalid", container.ErrInvalid, codes.InvalidArgument},
		{"invalid image reference", image.ErrInvalidReference, codes.InvalidArgument},
		{"ambiguous prefix", store.ErrAmbiguous, codes.InvalidArgument},
		{"container state", container.ErrState, codes.FailedPrecondition},
		{"sandbox not ready", sandbox.ErrNotReady, codes.FailedPrecondition},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded},
		{"canceled", context.Canceled, codes.Canceled},
		{"wrapped not found", fmt.Errorf("get x: %w", fmt.Errorf("sandbox abc: %w", sandbox.ErrNotFound)), codes.NotFound},
		{"wrapped invalid", fmt.Errorf("create: %w", container.ErrInvalid), codes.InvalidArgument},
		{"wrapped deadline", fmt.Errorf("runc create: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"joined", errors.Join(errors.New("x"), sandbox.ErrNotReady), codes.FailedPrecondition},
		{"existing status passes through", existing, codes.ResourceExhausted},
		{"other", errors.New("disk on fire"), codes.Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toStatus(tt.err)
			st, ok := status.FromError(got)
			if !ok {
				t.Fatalf("toStatus(%v) = %v, not a status", tt.err, got)
			}
			if st.Code() != tt.want {
				t.Fatalf("toStatus(%v) code = %v, want %v", tt.err, st.Code(), tt.want)
			}
			if st.Message() != tt.err.Error() && tt.err != existing {
				t.Errorf("message = %q, want %q", st.Message(), tt.err.Error())
			}
		})
	}
	if toStatus(existing) != existing {
		t.Error("an existing status was rebuilt")
	}
}

func TestSandboxConfig(t *testing.T) {
	req := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Uid: "uid-1", Namespace: "prod", Attempt: 3},
		Hostname:     "web-0",
		LogDirectory: "/var/log/pods/prod_web_uid-1",
		DnsConfig:    &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"prod.svc.cluster.local"}, Options: []string{"ndots:5"}},
		PortMappings: []*runtimeapi.PortMapping{
			{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: 8080, HostIp: "127.0.0.1"},
			{Protocol: runtimeapi.Protocol_UDP, ContainerPort: 53, HostPort: 5353},
			{Protocol: runtimeapi.Protocol_SCTP, ContainerPort: 9, HostPort: 9999},
		},
		Labels:      map[string]string{"app": "web"},
		Annotations: map[string]string{"a": "b"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: "/kubepods/besteffort/poduid-1",
			Sysctls:      map[string]string{"net.core.somaxconn": "1024"},
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				Privileged: true,
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: runtimeapi.NamespaceMode_NODE,
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
			},
		},
	}
	want := sandbox.Config{
		Name: "web", UID: "uid-1", Namespace: "prod", Attempt: 3,
		Hostname:     "web-0",
		LogDirectory: "/var/log/pods/prod_web_uid-1",
		DNS:          &sandbox.DNS{Servers: []string{"10.96.0.10"}, Searches: []string{"prod.svc.cluster.local"}, Options: []string{"ndots:5"}},
		PortMappings: []network.PortMapping{
			{HostPort: 8080, ContainerPort: 80, Protocol: "tcp", HostIP: "127.0.0.1"},
			{HostPort: 5353, ContainerPort: 53, Protocol: "udp"},
			{HostPort: 9999, ContainerPort: 9, Protocol: "sctp"},
		},
		Labels:         map[string]string{"app": "web"},
		Annotations:    map[string]string{"a": "b"},
		CgroupParent:   "/kubepods/besteffort/poduid-1",
		Namespaces:     sandbox.Namespaces{Network: sandbox.ModeNode, PID: sandbox.ModeContainer, IPC: sandbox.ModePod},
		Sysctls:        map[string]string{"net.core.somaxconn": "1024"},
		Privileged:     true,
		RuntimeHandler: "runc",
	}
	if got := sandboxConfig(req, "runc"); !reflect.DeepEqual(got, want) {
		t.Fatalf("sandboxConfig:\n got %#v\nwant %#v", got, want)
	}

	// Minimal config: metadata only.
	got := sandboxConfig(&runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "a", Namespace: "b"}}, "")
	if !reflect.DeepEqual(got, sandbox.Config{Name: "a", Namespace: "b"}) {
		t.Fatalf("minimal sandboxConfig = %#v", got)
	}
}

func TestContainerConfig(t *testing.T) {
	req := &runtimeapi.ContainerConfig{
		Metadata:   &runtimeapi.ContainerMetadata{Name: "app", Attempt: 2},
		Image:      &runtimeapi.ImageSpec{Image: "sha256:abc"},
		Command:    []string{"/bin/sh"},
		Args:       []string{"-c", "sleep 1"},
		WorkingDir: "/work",
		Envs:       []*runtimeapi.KeyValue{{Key: "A", Value: []byte("1")}, {Key: "B", Value: []byte("x=y")}},
		Mounts: []*runtimeapi.Mount{
			{ContainerPath: "/data", HostPath: "/var/lib/kubelet/x", Readonly: true, RecursiveReadOnly: true, SelinuxRelabel: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
			{ContainerPath: "/shared", HostPath: "/mnt/s", Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL},
			{ContainerPath: "/p", HostPath: "/mnt/p", Propagation: runtimeapi.MountPropagation_PROPAGATION_PRIVATE},
		},
		Devices:     []*runtimeapi.Device{{ContainerPath: "/dev/fuse", HostPath: "/dev/fuse", Permissions: "rwm"}},
		Labels:      map[string]string{"l": "1"},
		Annotations: map[string]string{"an": "2"},
		LogPath:     "app/2.log",
		Stdin:       true,
		StdinOnce:   true,
		Tty:         true,
		StopSignal:  runtimeapi.Signal_SIGNAL_SIGUSR1,
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{
				CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 1 << 30, OomScoreAdj: 999,
				CpusetCpus: "0-1", CpusetMems: "0", MemorySwapLimitInBytes: 2 << 30,
				HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 1 << 22}, {PageSize: "1GB", Limit: 1 << 30}},
				Unified:        map[string]string{"memory.high": "900M"},
			},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				Capabilities: &runtimeapi.Capability{
					AddCapabilities: []string{"NET_ADMIN"}, DropCapabilities: []string{"MKNOD"}, AddAmbientCapabilities: []string{"NET_BIND_SERVICE"},
				},
				Privileged: true,
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_TARGET, Ipc: runtimeapi.NamespaceMode_POD, TargetId: "target-1",
				},
				RunAsUser:          &runtimeapi.Int64Value{Value: 1000},
				RunAsGroup:         &runtimeapi.Int64Value{Value: 3000},
				RunAsUsername:      "alice",
				ReadonlyRootfs:     true,
				SupplementalGroups: []int64{4000, 5000},
				NoNewPrivs:         true,
				MaskedPaths:        []string{"/proc/x"},
				ReadonlyPaths:      []string{"/proc/y"},
			},
		},
	}
	u, g := int64(1000), int64(3000)
	want := container.Config{
		Name: "app", Attempt: 2, Image: "sha256:abc",
		Command: []string{"/bin/sh"}, Args: []string{"-c", "sleep 1"}, WorkingDir: "/work",
		Envs: []container.KeyValue{{Key: "A", Value: "1"}, {Key: "B", Value: "x=y"}},
		Mounts: []container.Mount{
			{ContainerPath: "/data", HostPath: "/var/lib/kubelet/x", Readonly: true, RecursiveReadonly: true, SelinuxRelabel: true, Propagation: container.PropagationHostToContainer},
			{ContainerPath: "/shared", HostPath: "/mnt/s", Propagation: container.PropagationBidirectional},
			{ContainerPath: "/p", HostPath: "/mnt/p", Propagation: container.PropagationPrivate},
		},
		Devices:     []container.Device{{ContainerPath: "/dev/fuse", HostPath: "/dev/fuse", Permissions: "rwm"}},
		Labels:      map[string]string{"l": "1"},
		Annotations: map[string]string{"an": "2"},
		LogPath:     "app/2.log",
		Stdin:       true, StdinOnce: true, Tty: true,
		StopSignal: "SIGUSR1",
		Resources: &container.Resources{
			CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 512, MemoryLimit: 1 << 30, OOMScoreAdj: 999,
			CpusetCPUs: "0-1", CpusetMems: "0", MemorySwapLimit: 2 << 30,
			HugepageLimits: map[string]uint64{"2MB": 1 << 22, "1GB": 1 << 30},
			Unified:        map[string]string{"memory.high": "900M"},
		},
		Security: container.Security{
			Privileged: true, RunAsUser: &u, RunAsGroup: &g, RunAsUsername: "alice",
			SupplementalGroups: []int64{4000, 5000}, ReadonlyRootfs: true, NoNewPrivs: true,
			Capabilities: &container.Capabilities{Add: []string{"NET_ADMIN"}, Drop: []string{"MKNOD"}, AddAmbient: []string{"NET_BIND_SERVICE"}},
			MaskedPaths:  []string{"/proc/x"}, ReadonlyPaths: []string{"/proc/y"},
			PIDMode: sandbox.ModeTarget, IPCMode: sandbox.ModePod, NetworkMode: sandbox.ModeNode, TargetID: "target-1",
		},
	}
	if got := containerConfig(req); !reflect.DeepEqual(got, want) {
		t.Fatalf("containerConfig:\n got %#v\nwant %#v", got, want)
	}

	// Minimal config: no linux section, default stop signal.
	got := containerConfig(&runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: "busybox"}})
	if !reflect.DeepEqual(got, container.Config{Name: "c", Image: "busybox"}) {
		t.Fatalf("minimal containerConfig = %#v", got)
	}
}

// Every CRI stop signal must reach the container manager as a name it can
// parse ("SIGTERM", not "SIGNAL_SIGTERM").
func TestContainerConfigStopSignals(t *testing.T) {
	for _, tt := range []struct {
		sig  runtimeapi.Signal
		want string
	}{
		{runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, ""},
		{runtimeapi.Signal_SIGNAL_SIGTERM, "SIGTERM"},
		{runtimeapi.Signal_SIGNAL_SIGKILL, "SIGKILL"},
		{runtimeapi.Signal_SIGNAL_SIGQUIT, "SIGQUIT"},
		{runtimeapi.Signal_SIGNAL_SIGHUP, "SIGHUP"},
	} {
		got := containerConfig(&runtimeapi.ContainerConfig{StopSignal: tt.sig}).StopSignal
		if got != tt.want {
			t.Errorf("stop signal %v → %q, want %q", tt.sig, got, tt.want)
		}
	}
}

func TestCRIImage(t *testing.T) {
	tests := []struct {
		user     string
		uid      *int64
		username string
	}{
		{"1000", ptr64(1000), ""},
		{"1000:1000", ptr64(1000), ""},
		{"0", ptr64(0), ""},
		{"www-data", nil, "www-data"},
		{"www-data:grp", nil, "www-data"},
		{"", nil, ""},
		{":1000", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			img := &image.Image{
				ID: "sha256:abc", RepoTags: []string{"docker.io/library/busybox:latest"},
				RepoDigests: []string{"docker.io/library/busybox@sha256:def"}, Size: 1234, Pinned: true,
				Config: ocispec.ImageConfig{User: tt.user},
			}
			got := criImage(img)
			if got.Id != img.ID || !reflect.DeepEqual(got.RepoTags, img.RepoTags) || !reflect.DeepEqual(got.RepoDigests, img.RepoDigests) ||
				got.Size != 1234 || !got.Pinned || got.GetSpec().GetImage() != img.ID {
				t.Errorf("criImage = %+v", got)
			}
			if tt.uid == nil {
				if got.Uid != nil {
					t.Errorf("uid = %v, want unset", got.Uid.GetValue())
				}
			} else if got.Uid == nil || got.Uid.GetValue() != *tt.uid {
				t.Errorf("uid = %v, want %d", got.Uid, *tt.uid)
			}
			if got.Username != tt.username {
				t.Errorf("username = %q, want %q", got.Username, tt.username)
			}
		})
	}
}

func ptr64(v int64) *int64 { return &v }

func TestUnaryInterceptor(t *testing.T) {
	s := New(Options{})
	s.log = slog.New(slog.DiscardHandler) // the panics below are expected
	info := &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/Version"}

	t.Run("panic becomes Internal", func(t *testing.T) {
		resp, err := s.unaryInterceptor(context.Background(), nil, info, func(context.Context, any) (any, error) {
			panic("handler bug")
		})
		if resp != nil {
			t.Errorf("resp = %v, want nil", resp)
		}
		if status.Code(err) != codes.Internal {
			t.Fatalf("err = %v, want Internal", err)
		}
	})
	t.Run("panic with error value", func(t *testing.T) {
		_, err := s.unaryInterceptor(context.Background(), nil, info, func(context.Context, any) (any, error) {
			panic(errors.New("bad"))
		})
		if status.Code(err) != codes.Internal {
			t.Fatalf("err = %v, want Internal", err)
		}
	})
	t.Run("domain error mapped", func(t *testing.T) {
		_, err := s.unaryInterceptor(context.Background(), nil, info, func(context.Context, any) (any, error) {
			return nil, fmt.Errorf("x: %w", container.ErrNotFound)
		})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("err = %v, want NotFound", err)
		}
	})
	t.Run("success passes through", func(t *testing.T) {
		resp, err := s.unaryInterceptor(context.Background(), "req", info, func(_ context.Context, req any) (any, error) {
			return req.(string) + "-ok", nil
		})
		if err != nil || resp != "req-ok" {
			t.Fatalf("resp, err = %v, %v", resp, err)
		}
	})
}

// Requests missing required fields are refused before any domain manager
// is touched (they are nil here: touching one would panic).
func TestRequiredFields(t *testing.T) {
	s := New(Options{})
	ctx := context.Background()
	sbMeta := &runtimeapi.PodSandboxMetadata{Name: "a", Namespace: "b", Uid: "c"}
	cMeta := &runtimeapi.ContainerMetadata{Name: "c"}
	tests := []struct {
		name string
		call func() error
	}{
		{"RunPodSandbox nil request", func() error { _, err := s.RunPodSandbox(ctx, nil); return err }},
		{"RunPodSandbox nil config", func() error { _, err := s.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{}); return err }},
		{"RunPodSandbox no metadata", func() error {
			_, err := s.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{Hostname: "x"}})
			return err
		}},
		{"RunPodSandbox unknown handler", func() error {
			_, err := s.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{Metadata: sbMeta}, RuntimeHandler: "kata"})
			return err
		}},
		{"CreateContainer nil request", func() error { _, err := s.CreateContainer(ctx, nil); return err }},
		{"CreateContainer nil config", func() error {
			_, err := s.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: "x"})
			return err
		}},
		{"CreateContainer no metadata", func() error {
			_, err := s.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: "x", Config: &runtimeapi.ContainerConfig{Image: &runtimeapi.ImageSpec{Image: "busybox"}}})
			return err
		}},
		{"CreateContainer no image", func() error {
			_, err := s.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: "x", Config: &runtimeapi.ContainerConfig{Metadata: cMeta}})
			return err
		}},
		{"CreateContainer empty image", func() error {
			_, err := s.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: "x", Config: &runtimeapi.ContainerConfig{Metadata: cMeta, Image: &runtimeapi.ImageSpec{}}})
			return err
		}},
		{"CreateContainer no sandbox id", func() error {
			_, err := s.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{Config: &runtimeapi.ContainerConfig{Metadata: cMeta, Image: &runtimeapi.ImageSpec{Image: "busybox"}}})
			return err
		}},
		{"PullImage nil request", func() error { _, err := s.PullImage(ctx, nil); return err }},
		{"PullImage nil image", func() error { _, err := s.PullImage(ctx, &runtimeapi.PullImageRequest{}); return err }},
		{"PullImage empty image", func() error {
			_, err := s.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{}})
			return err
		}},
		{"StartContainer nil request", func() error { _, err := s.StartContainer(ctx, nil); return err }},
		{"StartContainer empty id", func() error { _, err := s.StartContainer(ctx, &runtimeapi.StartContainerRequest{}); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("touched a nil manager: panic %v", r)
					}
				}()
				err = tt.call()
			}()
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("err = %v, want InvalidArgument", err)
			}
		})
	}
}
