package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is an in-memory OCI registry serving plain HTTP on 127.0.0.1.
type Registry struct {
	// Addr is "127.0.0.1:PORT", the host part of image references.
	Addr string
	srv  *http.Server
	done chan error
}

// StartRegistry listens on addr (e.g. "127.0.0.1:0" for a random port) and
// serves a registry until Close. Only loopback addresses are accepted: tests
// must not expose anything beyond the host.
func StartRegistry(addr string) (*Registry, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("registry address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("registry address %q is not loopback", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	r := &Registry{
		Addr: ln.Addr().String(),
		srv: &http.Server{
			Handler:           registry.New(registry.Logger(log.New(io.Discard, "", 0))),
			ReadHeaderTimeout: 10 * time.Second,
		},
		done: make(chan error, 1),
	}
	go func() { r.done <- r.srv.Serve(ln) }()
	return r, nil
}

// Push uploads img as ADDR/repoTag (e.g. "busybox:1.36") and returns the full
// reference and the manifest digest.
func (r *Registry) Push(repoTag string, img v1.Image) (ref string, digest v1.Hash, err error) {
	tag, err := name.NewTag(r.Addr+"/"+repoTag, name.Insecure)
	if err != nil {
		return "", v1.Hash{}, fmt.Errorf("parse %q: %w", repoTag, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := remote.Write(tag, img, remote.WithContext(ctx)); err != nil {
		return "", v1.Hash{}, fmt.Errorf("push %s: %w", tag, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", v1.Hash{}, err
	}
	return tag.String(), d, nil
}

// Close stops the server at once, dropping open connections: a graceful
// Shutdown waits seconds on connections clients keep alive after a HEAD.
func (r *Registry) Close() error {
	err := r.srv.Close()
	if serr := <-r.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// BusyboxRepoTag is where test suites push Busybox.
const BusyboxRepoTag = "busybox:1.36"

// ServeBusybox starts a registry on 127.0.0.1 with Busybox pushed as
// ADDR/busybox:1.36 and returns it with that reference.
func ServeBusybox() (*Registry, string, error) {
	img, err := Busybox()
	if err != nil {
		return nil, "", err
	}
	r, err := StartRegistry("127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	ref, _, err := r.Push(BusyboxRepoTag, img)
	if err != nil {
		r.Close()
		return nil, "", err
	}
	return r, ref, nil
}
