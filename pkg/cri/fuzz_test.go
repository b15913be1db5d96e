package cri

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/pkg/container"
	"github.com/pod-shim/pod-shim/pkg/image"
	"github.com/pod-shim/pod-shim/pkg/network"
	"github.com/pod-shim/pod-shim/pkg/runc"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
	"github.com/pod-shim/pod-shim/pkg/store"
)

// fuzzRPC is one CRI method the fuzzer may call: a fresh request to
// unmarshal the input into, and the call through the gRPC client.
type fuzzRPC struct {
	name string
	req  func() proto.Message
	call func(ctx context.Context, rs runtimeapi.RuntimeServiceClient, is runtimeapi.ImageServiceClient, m proto.Message) error
}

func rpc[Req proto.Message, Resp any](name string, newReq func() Req, f func(context.Context, Req, ...grpc.CallOption) (Resp, error)) fuzzRPC {
	return fuzzRPC{
		name: name,
		req:  func() proto.Message { return newReq() },
		call: func(ctx context.Context, _ runtimeapi.RuntimeServiceClient, _ runtimeapi.ImageServiceClient, m proto.Message) error {
			_, err := f(ctx, m.(Req))
			return err
		},
	}
}

// fuzzRPCs lists the RPCs fuzzed against a daemon-less server: real
// managers on an empty store in temp dirs, no CNI network, a runc that does
// not exist. Left out, because a well-formed request would act on the host
// rather than be refused: RunPodSandbox (network namespace, cgroups and a
// monitor process; the hostile and e2e suites drive it as root) and
// PullImage (registry traffic; pkg/image fuzzes references and archives).
func fuzzRPCs(rs runtimeapi.RuntimeServiceClient, is runtimeapi.ImageServiceClient) []fuzzRPC {
	return []fuzzRPC{
		rpc("Version", func() *runtimeapi.VersionRequest { return &runtimeapi.VersionRequest{} }, rs.Version),
		rpc("CreateContainer", func() *runtimeapi.CreateContainerRequest { return &runtimeapi.CreateContainerRequest{} }, rs.CreateContainer),
		rpc("UpdateContainerResources", func() *runtimeapi.UpdateContainerResourcesRequest {
			return &runtimeapi.UpdateContainerResourcesRequest{}
		}, rs.UpdateContainerResources),
		rpc("UpdatePodSandboxResources", func() *runtimeapi.UpdatePodSandboxResourcesRequest {
			return &runtimeapi.UpdatePodSandboxResourcesRequest{}
		}, rs.UpdatePodSandboxResources),
		rpc("StartContainer", func() *runtimeapi.StartContainerRequest { return &runtimeapi.StartContainerRequest{} }, rs.StartContainer),
		rpc("StopContainer", func() *runtimeapi.StopContainerRequest { return &runtimeapi.StopContainerRequest{} }, rs.StopContainer),
		rpc("RemoveContainer", func() *runtimeapi.RemoveContainerRequest { return &runtimeapi.RemoveContainerRequest{} }, rs.RemoveContainer),
		rpc("ListContainers", func() *runtimeapi.ListContainersRequest { return &runtimeapi.ListContainersRequest{} }, rs.ListContainers),
		rpc("ContainerStatus", func() *runtimeapi.ContainerStatusRequest { return &runtimeapi.ContainerStatusRequest{} }, rs.ContainerStatus),
		rpc("ReopenContainerLog", func() *runtimeapi.ReopenContainerLogRequest { return &runtimeapi.ReopenContainerLogRequest{} }, rs.ReopenContainerLog),
		rpc("ExecSync", func() *runtimeapi.ExecSyncRequest { return &runtimeapi.ExecSyncRequest{} }, rs.ExecSync),
		rpc("Exec", func() *runtimeapi.ExecRequest { return &runtimeapi.ExecRequest{} }, rs.Exec),
		rpc("Attach", func() *runtimeapi.AttachRequest { return &runtimeapi.AttachRequest{} }, rs.Attach),
		rpc("PortForward", func() *runtimeapi.PortForwardRequest { return &runtimeapi.PortForwardRequest{} }, rs.PortForward),
		rpc("StopPodSandbox", func() *runtimeapi.StopPodSandboxRequest { return &runtimeapi.StopPodSandboxRequest{} }, rs.StopPodSandbox),
		rpc("RemovePodSandbox", func() *runtimeapi.RemovePodSandboxRequest { return &runtimeapi.RemovePodSandboxRequest{} }, rs.RemovePodSandbox),
		rpc("PodSandboxStatus", func() *runtimeapi.PodSandboxStatusRequest { return &runtimeapi.PodSandboxStatusRequest{} }, rs.PodSandboxStatus),
		rpc("ListPodSandbox", func() *runtimeapi.ListPodSandboxRequest { return &runtimeapi.ListPodSandboxRequest{} }, rs.ListPodSandbox),
		rpc("ContainerStats", func() *runtimeapi.ContainerStatsRequest { return &runtimeapi.ContainerStatsRequest{} }, rs.ContainerStats),
		rpc("ListContainerStats", func() *runtimeapi.ListContainerStatsRequest { return &runtimeapi.ListContainerStatsRequest{} }, rs.ListContainerStats),
		rpc("PodSandboxStats", func() *runtimeapi.PodSandboxStatsRequest { return &runtimeapi.PodSandboxStatsRequest{} }, rs.PodSandboxStats),
		rpc("ListPodSandboxStats", func() *runtimeapi.ListPodSandboxStatsRequest { return &runtimeapi.ListPodSandboxStatsRequest{} }, rs.ListPodSandboxStats),
		rpc("UpdateRuntimeConfig", func() *runtimeapi.UpdateRuntimeConfigRequest { return &runtimeapi.UpdateRuntimeConfigRequest{} }, rs.UpdateRuntimeConfig),
		rpc("Status", func() *runtimeapi.StatusRequest { return &runtimeapi.StatusRequest{} }, rs.Status),
		rpc("CheckpointContainer", func() *runtimeapi.CheckpointContainerRequest { return &runtimeapi.CheckpointContainerRequest{} }, rs.CheckpointContainer),
		rpc("ListMetricDescriptors", func() *runtimeapi.ListMetricDescriptorsRequest { return &runtimeapi.ListMetricDescriptorsRequest{} }, rs.ListMetricDescriptors),
		rpc("ListPodSandboxMetrics", func() *runtimeapi.ListPodSandboxMetricsRequest { return &runtimeapi.ListPodSandboxMetricsRequest{} }, rs.ListPodSandboxMetrics),
		rpc("RuntimeConfig", func() *runtimeapi.RuntimeConfigRequest { return &runtimeapi.RuntimeConfigRequest{} }, rs.RuntimeConfig),
		rpc("ListImages", func() *runtimeapi.ListImagesRequest { return &runtimeapi.ListImagesRequest{} }, is.ListImages),
		rpc("ImageStatus", func() *runtimeapi.ImageStatusRequest { return &runtimeapi.ImageStatusRequest{} }, is.ImageStatus),
		rpc("RemoveImage", func() *runtimeapi.RemoveImageRequest { return &runtimeapi.RemoveImageRequest{} }, is.RemoveImage),
		rpc("ImageFsInfo", func() *runtimeapi.ImageFsInfoRequest { return &runtimeapi.ImageFsInfoRequest{} }, is.ImageFsInfo),
	}
}

// fuzzServer is a Server on real managers over temp dirs, served through a
// gRPC server with the daemon's interceptors on an in-memory listener.
func fuzzServer(tb testing.TB) (runtimeapi.RuntimeServiceClient, runtimeapi.ImageServiceClient) {
	tb.Helper()
	dir := tb.TempDir()
	log := slog.New(slog.DiscardHandler)
	db, err := store.Open(filepath.Join(dir, "meta.db"), 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	images, err := image.New(image.Options{Root: filepath.Join(dir, "image"), DB: db, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	nw, err := network.New(network.Options{ConfDir: filepath.Join(dir, "cni"), BinDirs: []string{filepath.Join(dir, "bin")}, CacheDir: filepath.Join(dir, "cnicache"), Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	noRunc := filepath.Join(dir, "no-runc")
	sandboxes, err := sandbox.New(sandbox.Options{
		DB: db, Network: nw, Images: images, StateDir: filepath.Join(dir, "state"),
		Runtime: noRunc, RuntimeRoot: filepath.Join(dir, "runc"), CgroupDriver: "cgroupfs", Logger: log,
		Direct: runc.New(noRunc, filepath.Join(dir, "runc")),
	})
	if err != nil {
		tb.Fatal(err)
	}
	containers, err := container.New(container.Options{
		DB: db, Sandboxes: sandboxes, Images: images, StateDir: filepath.Join(dir, "state"),
		CgroupDriver: "cgroupfs", Runtime: runc.New(noRunc, filepath.Join(dir, "runc")), Logger: log,
	})
	if err != nil {
		tb.Fatal(err)
	}
	srv := New(Options{
		Sandboxes: sandboxes, Containers: containers, Images: images, Network: nw,
		CgroupDriver: "cgroupfs", RuntimePath: noRunc, Logger: log, LayerRoot: filepath.Join(dir, "layers"),
	})
	g := grpc.NewServer(srv.Interceptors()...)
	srv.Register(g)
	lis := bufconn.Listen(1 << 20)
	go g.Serve(lis)
	tb.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///fuzz",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
}

// fuzzSeeds are requests worth starting from: the attacks of issue 11
// (cgroup key traversal, a privileged container in a plain pod) and
// ordinary calls on ids that do not exist.
func fuzzSeeds() []struct {
	rpc string
	msg proto.Message
} {
	traversal := &runtimeapi.LinuxContainerResources{
		Unified:        map[string]string{"../../../../etc/x": "1", "memory.max": "1000"},
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB/../../x", Limit: 1}},
		OomScoreAdj:    -1000,
	}
	return []struct {
		rpc string
		msg proto.Message
	}{
		{"CreateContainer", &runtimeapi.CreateContainerRequest{PodSandboxId: "abc", Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: "busybox"},
			Linux:   &runtimeapi.LinuxContainerConfig{Resources: traversal, SecurityContext: &runtimeapi.LinuxContainerSecurityContext{Privileged: true}},
			LogPath: "../../../etc/passwd",
		}}},
		{"UpdateContainerResources", &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "abc", Linux: traversal}},
		{"UpdatePodSandboxResources", &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: "abc", Resources: traversal}},
		{"ExecSync", &runtimeapi.ExecSyncRequest{ContainerId: "abc", Cmd: []string{"sh"}, Timeout: -1}},
		{"PortForward", &runtimeapi.PortForwardRequest{PodSandboxId: "abc", Port: []int32{-1, 70000}}},
		{"ReopenContainerLog", &runtimeapi.ReopenContainerLogRequest{ContainerId: "../x"}},
		{"ImageStatus", &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "a:b@sha256:zz"}}},
		{"RemoveImage", &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: "../../x"}}},
		{"ListContainers", &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: "a", PodSandboxId: "b", State: &runtimeapi.ContainerStateValue{State: 7}}}},
		{"StopContainer", &runtimeapi.StopContainerRequest{ContainerId: "", Timeout: -5}},
		{"UpdateRuntimeConfig", &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "not-a-cidr"}}}},
	}
}

// FuzzCRIRequest sends each fuzzed message to one RPC (chosen by the first
// input byte) through the daemon's gRPC interceptors. Bad input must be
// refused with a client error: never a panic (the interceptor turns one
// into Internal) and never Internal or Unknown.
func FuzzCRIRequest(f *testing.F) {
	rs, is := fuzzServer(f)
	rpcs := fuzzRPCs(rs, is)
	index := map[string]int{}
	for i, r := range rpcs {
		index[r.name] = i
	}
	for _, s := range fuzzSeeds() {
		b, err := proto.Marshal(s.msg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(index[s.rpc]), b)
	}
	for i := range rpcs {
		f.Add(uint8(i), []byte{})
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		r := rpcs[int(which)%len(rpcs)]
		msg := r.req()
		if err := proto.Unmarshal(data, msg); err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err := r.call(ctx, rs, is, msg)
		switch status.Code(err) {
		case codes.Internal, codes.Unknown:
			t.Fatalf("%s(%v): %v", r.name, msg, err)
		case codes.DeadlineExceeded:
			t.Fatalf("%s(%v) hung: %v", r.name, msg, err)
		}
	})
}
