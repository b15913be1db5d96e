package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Annotations naming an image in an OCI layout's index.json.
const (
	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = "org.opencontainers.image.ref.name"
)

// Import loads a docker-save archive (manifest.json) or an OCI layout
// archive (index.json) from r, which may be a pipe: it is spooled to a
// temporary file first because both formats need random access.
func (s *Store) Import(ctx context.Context, r io.Reader) ([]*Image, error) {
	work, err := os.MkdirTemp(s.path("tmp"), "import-")
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer os.RemoveAll(work)
	archive := filepath.Join(work, "archive.tar")
	f, err := os.Create(archive)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	_, err = io.Copy(f, &ctxReader{ctx: ctx, r: r})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("import: spool archive: %w", err)
	}
	kind, sizes, err := archiveKind(archive)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	for _, n := range []string{"manifest.json", "index.json"} {
		if sizes[n] > s.limits.MaxManifestBytes {
			return nil, fmt.Errorf("import: %s: %w", n, manifestTooBig(sizes[n], s.limits.MaxManifestBytes))
		}
	}
	var imgs []*Image
	switch kind {
	case "docker":
		imgs, err = s.importDocker(ctx, archive, sizes)
	default:
		dir := filepath.Join(work, "layout")
		if err := extractPlain(ctx, archive, dir); err != nil {
			return nil, fmt.Errorf("import: unpack OCI layout: %w", err)
		}
		imgs, err = s.importLayout(ctx, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return imgs, nil
}

// archiveKind tells a docker-save archive from an OCI layout one, and
// returns the size of each entry by clean name, so that what ggcr reads
// into memory whole (manifests, configs) can be checked against the limits
// first.
func archiveKind(archive string) (string, map[string]int64, error) {
	f, err := os.Open(archive)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	sizes := map[string]int64{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", nil, fmt.Errorf("read archive: %w", err)
		}
		sizes[cleanRel(hdr.Name)] = hdr.Size
	}
	if _, ok := sizes["manifest.json"]; ok {
		return "docker", sizes, nil
	}
	if _, ok := sizes["index.json"]; ok {
		return "oci", sizes, nil
	}
	return "", nil, errors.New("archive has neither manifest.json (docker save) nor index.json (OCI layout)")
}

func (s *Store) importDocker(ctx context.Context, archive string, sizes map[string]int64) ([]*Image, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(archive) }
	manifest, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("read manifest.json: %w", err)
	}
	if n := len(manifest); n > s.limits.MaxLayers {
		// Not a layer count, but as many images is as much work.
		return nil, fmt.Errorf("%w: %d images in one archive, over %d (registry.max_layers)", ErrLimit, n, s.limits.MaxLayers)
	}
	var out []*Image
	for i, m := range manifest {
		if n := sizes[cleanRel(m.Config)]; n > s.limits.MaxConfigBytes {
			return nil, fmt.Errorf("archive entry %d: %w: image config of %d bytes is over the %d-byte limit (registry.max_config_bytes)", i, ErrLimit, n, s.limits.MaxConfigBytes)
		}
		if n := len(m.Layers); n > s.limits.MaxLayers {
			return nil, fmt.Errorf("archive entry %d: %w: %d layers, over the limit of %d (registry.max_layers)", i, ErrLimit, n, s.limits.MaxLayers)
		}
		var tag *name.Tag
		var tags []string
		for _, t := range m.RepoTags {
			p, err := parseRef(t)
			if err != nil || p.tag == "" {
				return nil, fmt.Errorf("archive entry %d: tag %q: %w", i, t, ErrInvalidReference)
			}
			tags = append(tags, p.tagRef())
			if tag == nil {
				nt, err := name.NewTag(t)
				if err != nil {
					return nil, fmt.Errorf("archive entry %d: tag %q: %w", i, t, ErrInvalidReference)
				}
				tag = &nt
			}
		}
		if tag == nil && len(manifest) > 1 {
			return nil, fmt.Errorf("archive entry %d has no tag and the archive holds %d images: cannot tell it apart", i, len(manifest))
		}
		img, err := tarball.Image(opener, tag)
		if err != nil {
			return nil, fmt.Errorf("archive entry %d: %w", i, err)
		}
		rec, err := s.commitImage(ctx, ingest{img: img, tags: tags})
		if err != nil {
			return nil, fmt.Errorf("archive entry %d: %w", i, err)
		}
		out = append(out, rec)
	}
	return out, nil
}

func (s *Store) importLayout(ctx context.Context, dir string) ([]*Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("read OCI layout: %w", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read index.json: %w", err)
	}
	var out []*Image
	for _, d := range im.Manifests {
		if err := s.layoutBlobFits(dir, d.Digest, s.limits.MaxManifestBytes); err != nil {
			return nil, fmt.Errorf("layout entry %s: %w", d.Digest, err)
		}
		in := ingest{extraBlobs: map[string][]byte{}}
		var img v1.Image
		switch {
		case d.MediaType.IsImage():
			img, err = idx.Image(d.Digest)
		case d.MediaType.IsIndex():
			img, err = s.platformImage(idx, d, in.extraBlobs)
		default:
			s.log.Debug("skipping non-image entry of OCI layout", "mediaType", d.MediaType, "digest", d.Digest)
			continue
		}
		if err == nil {
			err = s.layoutImageFits(dir, img)
		}
		if err != nil {
			return nil, fmt.Errorf("layout entry %s: %w", d.Digest, err)
		}
		in.img = img
		if p := layoutName(d.Annotations); p != nil {
			if t := p.tagRef(); t != "" {
				in.tags = []string{t}
			}
			in.digestRefs = []string{p.digestRef(d.Digest.String())}
		}
		rec, err := s.commitImage(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("layout entry %s: %w", d.Digest, err)
		}
		out = append(out, rec)
	}
	if len(out) == 0 {
		return nil, errors.New("OCI layout holds no image")
	}
	return out, nil
}

// layoutBlobFits checks a layout blob's size on disk before ggcr reads it
// into memory whole: the descriptor's size is only a claim.
func (s *Store) layoutBlobFits(dir string, h v1.Hash, max int64) error {
	fi, err := os.Lstat(filepath.Join(dir, "blobs", h.Algorithm, h.Hex))
	if err != nil {
		return fmt.Errorf("blob %s: %w", h, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > max {
		return fmt.Errorf("%w: blob %s of %d bytes is over the %d-byte limit for manifests and configs", ErrLimit, h, fi.Size(), max)
	}
	return nil
}

// layoutImageFits checks the sizes of an image's manifest and config blobs.
func (s *Store) layoutImageFits(dir string, img v1.Image) error {
	d, err := img.Digest()
	if err != nil {
		return err
	}
	if err := s.layoutBlobFits(dir, d, s.limits.MaxManifestBytes); err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	return s.layoutBlobFits(dir, m.Config.Digest, s.limits.MaxConfigBytes)
}

// platformImage picks linux/GOARCH from a nested index, keeping the index
// itself as a blob of the image.
func (s *Store) platformImage(idx v1.ImageIndex, d v1.Descriptor, blobs map[string][]byte) (v1.Image, error) {
	child, err := idx.ImageIndex(d.Digest)
	if err != nil {
		return nil, err
	}
	raw, err := child.RawManifest()
	if err != nil {
		return nil, err
	}
	blobs[d.Digest.String()] = raw
	cm, err := child.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, m := range cm.Manifests {
		if m.MediaType.IsImage() && m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == runtime.GOARCH {
			return child.Image(m.Digest)
		}
	}
	return nil, fmt.Errorf("no image for linux/%s in index %s", runtime.GOARCH, d.Digest)
}

// layoutName reads an image's name from its index annotations. A bare
// org.opencontainers.image.ref.name ("latest") is a tag inside the layout,
// not a name, and is ignored.
func layoutName(ann map[string]string) *parsedRef {
	for _, k := range []string{annotationContainerdName, annotationRefName} {
		v := ann[k]
		if v == "" || (k == annotationRefName && !strings.ContainsAny(v, "/:@")) {
			continue
		}
		if p, err := parseRef(v); err == nil {
			return p
		}
	}
	return nil
}

// extractPlain unpacks an OCI layout archive: regular files and directories
// only, nothing outside dir. Layout archives hold no links or devices.
func extractPlain(ctx context.Context, archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		rel := cleanRel(hdr.Name)
		target := filepath.Join(dir, filepath.FromSlash(rel))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
		case tar.TypeReg: // tar.Reader reports the old TypeRegA as TypeReg
			if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
				return err
			}
			out, err := os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected entry %q of type %q in OCI layout", path.Clean(hdr.Name), hdr.Typeflag)
		}
	}
}
