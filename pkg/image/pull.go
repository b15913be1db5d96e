package image

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// endpoint is one place a repository can be fetched from.
type endpoint struct {
	host      string // host[:port] as used in the request URL
	plainHTTP bool   // http:// allowed (and tried after https, as docker does)
	insecure  bool   // TLS certificates not verified
	mirror    bool
}

// endpoints lists where to look for a repository on host: its mirrors in
// order, then the host itself.
func (s *Store) endpoints(host string) []endpoint {
	cfg := s.registries[host]
	var eps []endpoint
	for _, m := range cfg.Mirrors {
		ep := endpoint{mirror: true}
		switch {
		case strings.HasPrefix(m, "http://"):
			ep.host, ep.plainHTTP, ep.insecure = strings.TrimPrefix(m, "http://"), true, true
		case strings.HasPrefix(m, "https://"):
			ep.host = strings.TrimPrefix(m, "https://")
		default:
			ep.host = m
		}
		ep.host = strings.TrimSuffix(ep.host, "/")
		ep.plainHTTP = ep.plainHTTP || isLoopback(ep.host)
		eps = append(eps, ep)
	}
	up := endpoint{host: host, insecure: cfg.Insecure, plainHTTP: cfg.Insecure || isLoopback(host)}
	return append(eps, up)
}

// isLoopback reports whether host[:port] is this machine, where plain HTTP
// is allowed without configuration, as in docker and containerd.
func isLoopback(hostport string) bool {
	h := hostport
	if sh, _, err := net.SplitHostPort(hostport); err == nil {
		h = sh
	}
	h = strings.Trim(h, "[]")
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// newTransports returns a verifying and a non-verifying transport, shared by
// all pulls so connections are reused. Timeouts bound every phase that can
// hang on a dead registry; the body transfer is bounded by the caller's ctx.
func newTransports() (secure, insecure http.RoundTripper) {
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	base.TLSHandshakeTimeout = 10 * time.Second
	base.ResponseHeaderTimeout = 30 * time.Second
	base.MaxIdleConnsPerHost = maxParallelLayers + 1
	ins := base.Clone()
	ins.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // only for hosts configured Insecure
	return base, ins
}

// schemeGuard refuses plain HTTP to an endpoint that does not allow it:
// ggcr falls back to http for RFC 1918 addresses on its own, which would
// send credentials and accept content in the clear.
type schemeGuard struct {
	next        http.RoundTripper
	plainHTTP   bool
	maxManifest int64
}

func (g schemeGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.plainHTTP {
		return nil, fmt.Errorf("refusing plain HTTP to %s: not a loopback registry and not configured insecure", req.URL.Host)
	}
	resp, err := g.next.RoundTrip(req)
	if err == nil {
		resp, err = limitManifest(req, resp, g.maxManifest)
	}
	if n, ok := req.Context().Value(pullBytesKey{}).(*atomic.Int64); ok && err == nil && resp.Body != nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: n}
	}
	return resp, err
}

// pullBytesKey carries a pull's byte counter to the transport in the
// requests' context, for ObservePull.
type pullBytesKey struct{}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// Pull fetches ref (for linux/GOARCH when it is a multi-platform index),
// trying the host's mirrors first, and records it under its normalized tag
// and digest.
func (s *Store) Pull(ctx context.Context, ref string, auth *Auth) (_ *Image, err error) {
	p, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	log := s.log.With("image", p.named.String())
	start := time.Now()
	if s.observePull != nil {
		var n atomic.Int64
		ctx = context.WithValue(ctx, pullBytesKey{}, &n)
		defer func() { s.observePull(n.Load(), time.Since(start), err) }()
	}
	var errs []error
	for _, ep := range s.endpoints(p.domain) {
		img, err := s.pullFrom(ctx, p, ep, auth)
		if err == nil {
			log.Info("image pulled", "id", img.ID, "endpoint", ep.host, "duration", time.Since(start))
			return img, nil
		}
		log.Warn("pull failed", "endpoint", ep.host, "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", ep.host, err))
		if ctx.Err() != nil {
			break
		}
	}
	err = errors.Join(errs...)
	if notFound(errs) {
		return nil, fmt.Errorf("pull %s: %w: %w", p.named, ErrNotFound, err)
	}
	return nil, fmt.Errorf("pull %s: %w", p.named, err)
}

// notFound reports whether the registry that was reached said the image is
// not there, as opposed to not being reachable at all.
func notFound(errs []error) bool {
	for _, err := range errs {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return true
		}
	}
	return false
}

func (s *Store) pullFrom(ctx context.Context, p *parsedRef, ep endpoint, auth *Auth) (*Image, error) {
	var nameOpts []name.Option
	if ep.plainHTTP {
		nameOpts = append(nameOpts, name.Insecure)
	}
	rref, err := name.ParseReference(p.remoteRef(ep.host), nameOpts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidReference, err)
	}
	rt := s.secureTransport
	if ep.insecure {
		rt = s.insecureTransport
	}
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(schemeGuard{next: rt, plainHTTP: ep.plainHTTP, maxManifest: s.limits.MaxManifestBytes}),
		remote.WithAuth(authenticator(auth, ep)),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
		remote.WithJobs(maxParallelLayers),
		// ggcr's default waits 1 s then 3 s between tries; a kubelet pull
		// already retries with its own backoff.
		remote.WithRetryBackoff(remote.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 2}),
	}
	desc, err := remote.Get(rref, opts...)
	if err != nil {
		return nil, err
	}
	in := ingest{extraBlobs: map[string][]byte{}}
	if desc.MediaType.IsIndex() {
		in.extraBlobs[desc.Digest.String()] = desc.Manifest
	}
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("resolve image for linux/%s: %w", runtime.GOARCH, err)
	}
	in.img = img
	// A ref with both tag and digest pulls by digest and records only the
	// digest, as containerd does: the tag is the user's note, not a claim
	// the registry vouched for, so the local tag never moves.
	if t := p.tagRef(); t != "" && p.digest == "" {
		in.tags = []string{t}
	}
	// RepoDigests carries the digest the user can pull by: the index's for a
	// multi-platform image, as containerd reports.
	in.digestRefs = []string{p.digestRef(desc.Digest.String())}
	return s.commitImage(ctx, in)
}

// authenticator turns CRI credentials into ggcr's. Credentials go to the
// upstream host, and to a mirror only when they name it, so a mirror never
// sees secrets meant for another registry.
func authenticator(a *Auth, ep endpoint) authn.Authenticator {
	if a == nil || *a == (Auth{}) {
		return authn.Anonymous
	}
	if ep.mirror {
		server := strings.TrimPrefix(strings.TrimPrefix(a.ServerAddress, "https://"), "http://")
		if strings.TrimSuffix(server, "/") != ep.host {
			return authn.Anonymous
		}
	}
	return authn.FromConfig(authn.AuthConfig{
		Username:      a.Username,
		Password:      a.Password,
		Auth:          a.Auth,
		IdentityToken: a.IdentityToken,
		RegistryToken: a.RegistryToken,
	})
}
