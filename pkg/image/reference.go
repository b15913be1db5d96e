package image

import (
	"fmt"
	"strings"

	"github.com/distribution/reference"
)

// parsedRef is an image reference in the normalized form CRI users see from
// containerd: "busybox" is "docker.io/library/busybox:latest".
type parsedRef struct {
	named  reference.Named // normalized, tag defaulted to latest unless a digest is given
	domain string          // registry host as written in refs ("docker.io", "127.0.0.1:5000")
	path   string          // repository path inside the registry ("library/busybox")
	tag    string          // "" when pulled by digest only
	digest string          // "" when pulled by tag only
}

// parseRef normalizes ref the way containerd's CRI plugin does. We use
// distribution/reference (containerd's own parser) rather than ggcr's name
// package because ggcr rewrites docker.io to index.docker.io and does not
// produce the familiar/normalized forms kubelet compares against.
func parseRef(ref string) (*parsedRef, error) {
	if ref == "" || strings.TrimSpace(ref) != ref {
		return nil, fmt.Errorf("%w: %q", ErrInvalidReference, ref)
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrInvalidReference, ref, err)
	}
	named = reference.TagNameOnly(named)
	p := &parsedRef{named: named, domain: reference.Domain(named), path: reference.Path(named)}
	if t, ok := named.(reference.Tagged); ok {
		p.tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		p.digest = d.Digest().String()
		// With a digest the tag would be defaulted only if none was given;
		// TagNameOnly leaves digested refs alone, so tag is the user's.
	}
	return p, nil
}

// name is the repository without tag or digest: "docker.io/library/busybox".
func (p *parsedRef) name() string { return p.named.Name() }

// tagRef is the key under which a tag is stored, "" for digest-only refs.
func (p *parsedRef) tagRef() string {
	if p.tag == "" {
		return ""
	}
	return p.name() + ":" + p.tag
}

// digestRef is the RepoDigests form for a manifest digest.
func (p *parsedRef) digestRef(digest string) string { return p.name() + "@" + digest }

// remoteRef is what the registry client asks host for: the same repository
// path on a mirror, by digest when one was given (it pins the content).
func (p *parsedRef) remoteRef(host string) string {
	if p.digest != "" {
		return host + "/" + p.path + "@" + p.digest
	}
	return host + "/" + p.path + ":" + p.tag
}

// lookupKey is the key a Get of this ref looks up in the ref bucket.
func (p *parsedRef) lookupKey() string {
	if p.digest != "" {
		return p.digestRef(p.digest)
	}
	return p.tagRef()
}
