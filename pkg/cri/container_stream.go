package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Streamer hands out the URLs of streaming sessions; pkg/streaming's
// Server is the one the daemon uses.
type Streamer interface {
	GetExec(*runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error)
	GetAttach(*runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error)
	GetPortForward(*runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error)
}

// Exec returns the URL of an exec session on the stream server; the
// session itself (process, stdio, resize, exit code) runs there.
func (s *Server) Exec(ctx context.Context, r *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if r.GetContainerId() == "" {
		return nil, invalid("container_id is empty")
	}
	if len(r.GetCmd()) == 0 {
		return nil, invalid("cmd is empty")
	}
	if !r.GetStdin() && !r.GetStdout() && !r.GetStderr() {
		return nil, invalid("one of stdin, stdout and stderr must be set")
	}
	if s.streamer == nil {
		return nil, unavailable("the stream server")
	}
	// Fail now, not when the client connects, for an unknown container.
	c, err := s.containers.Get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	req := cloneExec(r)
	req.ContainerId = c.ID
	return s.streamer.GetExec(req)
}

// Attach returns the URL of an attach session on the stream server.
func (s *Server) Attach(ctx context.Context, r *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if r.GetContainerId() == "" {
		return nil, invalid("container_id is empty")
	}
	if s.streamer == nil {
		return nil, unavailable("the stream server")
	}
	c, err := s.containers.Get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	return s.streamer.GetAttach(&runtimeapi.AttachRequest{
		ContainerId: c.ID, Stdin: r.GetStdin(), Tty: r.GetTty(), Stdout: r.GetStdout(), Stderr: r.GetStderr(),
	})
}

// PortForward returns the URL of a port-forward session into the pod's netns.
func (s *Server) PortForward(ctx context.Context, r *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if r.GetPodSandboxId() == "" {
		return nil, invalid("pod_sandbox_id is empty")
	}
	for _, p := range r.GetPort() {
		if p <= 0 || p > 65535 {
			return nil, invalid("port %d out of range", p)
		}
	}
	if s.streamer == nil {
		return nil, unavailable("the stream server")
	}
	sb, err := s.sandboxes.Get(r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	return s.streamer.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: sb.ID, Port: r.GetPort()})
}

func cloneExec(r *runtimeapi.ExecRequest) *runtimeapi.ExecRequest {
	return &runtimeapi.ExecRequest{
		ContainerId: r.GetContainerId(), Cmd: r.GetCmd(), Tty: r.GetTty(),
		Stdin: r.GetStdin(), Stdout: r.GetStdout(), Stderr: r.GetStderr(),
	}
}
