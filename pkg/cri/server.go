// Package cri is pod-shim's gRPC edge: it translates CRI v1 requests into
// calls on the domain packages and their results and errors back into CRI
// messages and gRPC codes. No runtime logic lives here.
package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/pkg/container"
	"github.com/pod-shim/pod-shim/pkg/events"
	"github.com/pod-shim/pod-shim/pkg/image"
	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/network"
	"github.com/pod-shim/pod-shim/pkg/runc"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
	"github.com/pod-shim/pod-shim/pkg/stats"
	"github.com/pod-shim/pod-shim/pkg/store"
	"github.com/pod-shim/pod-shim/pkg/streaming"
)

// Version facts reported by the Version RPC.
const (
	RuntimeName    = "pod-shim"
	RuntimeVersion = "0.1.0"
	APIVersion     = "v1"
	// kubeAPIVersion is the version of the CRI request/response messages;
	// the kubelet only checks that it is "0.1.0".
	kubeAPIVersion = "0.1.0"
)

// Options wire the server to the domain.
type Options struct {
	Sandboxes    *sandbox.Manager
	Containers   *container.Manager
	Images       *image.Store
	Network      *network.Manager
	CgroupDriver string
	RuntimePath  string
	PullTimeout  time.Duration // upper bound of one PullImage; 0 = the client's deadline only
	Logger       *slog.Logger

	// Stats samples cgroups for the stats RPCs.
	Stats *stats.Collector
	// LayerRoot is the dir holding each container's writable layer as
	// <id>/upper, only for a server without an image store: with Images
	// set, the image store says where the layers are.
	LayerRoot string
	// Streamer serves Exec, Attach and PortForward sessions.
	Streamer Streamer
	// Events receives container lifecycle events for GetContainerEvents.
	Events *events.Broker
}

// Server implements the CRI RuntimeService and ImageService.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	sandboxes  *sandbox.Manager
	containers *container.Manager
	images     *image.Store
	network    *network.Manager
	cgroup     string
	// RuntimePath is the OCI runtime binary Status checks for.
	RuntimePath string
	pullTimeout time.Duration
	log         *slog.Logger

	// Node services (stats, streaming, events, metrics); set
	// up by initNodeServices, each nil when not configured.
	stats     *statsSource
	streamer  Streamer
	lifecycle *events.Poller
}

// New returns a Server.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Server{
		sandboxes: o.Sandboxes, containers: o.Containers, images: o.Images,
		network: o.Network, cgroup: o.CgroupDriver, log: o.Logger, RuntimePath: o.RuntimePath, pullTimeout: o.PullTimeout,
	}
	if o.Sandboxes != nil && o.Containers != nil {
		o.Sandboxes.SetContainers(o.Containers)
	}
	s.initNodeServices(o)
	return s
}

// Register adds both CRI services to g.
func (s *Server) Register(g *grpc.Server) {
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, s)
}

// Interceptors returns the server options every pod-shim gRPC server uses:
// panics become Internal errors instead of killing the daemon, and domain
// errors become gRPC codes.
func (s *Server) Interceptors() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.unaryInterceptor, s.eventsInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
	}
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
			resp, err = nil, status.Errorf(codes.Internal, "internal error in %s: %v", info.FullMethod, r)
		}
	}()
	resp, err = h(ctx, req)
	if err != nil {
		err = toStatus(err)
		s.log.Debug("request failed", "method", info.FullMethod, "error", err)
	}
	return resp, err
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in stream handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
			err = status.Errorf(codes.Internal, "internal error in %s: %v", info.FullMethod, r)
		}
	}()
	if err = h(srv, ss); err != nil {
		err = toStatus(err)
	}
	return err
}

// toStatus maps domain errors to gRPC codes: the one place pkg/cri does.
// An error matching none of errorCodes is Unknown.
func toStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codeOf(err), err.Error())
}

func codeOf(err error) codes.Code {
	for _, ec := range errorCodes {
		if errors.Is(err, ec.err) {
			return ec.code
		}
	}
	return codes.Unknown
}

// errorCodes are the domain's sentinel errors and their gRPC codes, first
// match wins. TestEveryDomainSentinelHasACode fails when a domain package
// exports an Err* that is missing here.
var errorCodes = []struct {
	err  error
	code codes.Code
}{
	{sandbox.ErrNotFound, codes.NotFound},
	{container.ErrNotFound, codes.NotFound},
	{image.ErrNotFound, codes.NotFound},
	{store.ErrNotFound, codes.NotFound},
	// The monitor or runc not knowing a container means it is gone.
	{monitor.ErrNotFound, codes.NotFound},
	{runc.ErrNotFound, codes.NotFound},

	{sandbox.ErrAlreadyExists, codes.AlreadyExists},
	{container.ErrAlreadyExists, codes.AlreadyExists},

	{sandbox.ErrInvalid, codes.InvalidArgument},
	{container.ErrInvalid, codes.InvalidArgument},
	{image.ErrInvalidReference, codes.InvalidArgument},
	{store.ErrAmbiguous, codes.InvalidArgument},
	{network.ErrInvalidPod, codes.InvalidArgument},
	{runc.ErrUnknownHandler, codes.InvalidArgument},

	{container.ErrState, codes.FailedPrecondition},
	{sandbox.ErrNotReady, codes.FailedPrecondition},
	// No usable CNI config yet: the node's state, not the request, is wrong.
	{network.ErrNotReady, codes.FailedPrecondition},
	// Exec or attach into a container that has exited.
	{monitor.ErrNotRunning, codes.FailedPrecondition},
	{runc.ErrNotRunning, codes.FailedPrecondition},

	// An image over the node's configured size limits: the operator's
	// limit, not a malformed request.
	{image.ErrLimit, codes.ResourceExhausted},

	{monitor.ErrExecTimeout, codes.DeadlineExceeded},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},

	// What the handler's runtime, or this runtime, cannot do on this host.
	{runc.ErrUnsupported, codes.Unimplemented},
	{streaming.ErrUnsupported, codes.Unimplemented},
}

func invalid(format string, a ...any) error {
	return status.Error(codes.InvalidArgument, fmt.Sprintf(format, a...))
}
