package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pod-shim/pod-shim/pkg/failpoint"
	"github.com/pod-shim/pod-shim/pkg/store"
)

// maxParallelLayers matches containerd's default max_concurrent_downloads.
const maxParallelLayers = 3

// ingest is one image on its way into the store, from a registry or an archive.
type ingest struct {
	img        v1.Image
	tags       []string // normalized tag refs to point at the image
	digestRefs []string // name@digest refs to record
	extraBlobs map[string][]byte
}

// commitImage fetches and unpacks what the store lacks of in.img, then
// records the image, moving its tags from any image that had them. Nothing
// is recorded unless everything is on disk and verified.
func (s *Store) commitImage(ctx context.Context, in ingest) (*Image, error) {
	manifestRaw, err := in.img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	manifest, err := v1.ParseManifest(bytes.NewReader(manifestRaw))
	if err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	configRaw, err := in.img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read image config: %w", err)
	}
	configDigest := digestOf(configRaw)
	if configDigest != manifest.Config.Digest.String() {
		return nil, fmt.Errorf("image config digest %s does not match manifest (%s)", configDigest, manifest.Config.Digest)
	}
	var config ocispec.Image
	if err := json.Unmarshal(configRaw, &config); err != nil {
		return nil, fmt.Errorf("parse image config: %w", err)
	}
	if config.OS != "" && config.OS != "linux" {
		return nil, fmt.Errorf("image is for %s, not linux", config.OS)
	}
	layers, err := in.img.Layers()
	if err != nil {
		return nil, fmt.Errorf("list layers: %w", err)
	}
	diffIDs := config.RootFS.DiffIDs
	if len(diffIDs) != len(layers) {
		return nil, fmt.Errorf("image config lists %d layers, manifest %d", len(diffIDs), len(layers))
	}
	manifestDigest := digestOf(manifestRaw)

	hexes := make([]string, len(diffIDs))
	for i, d := range diffIDs {
		if d.Algorithm() != "sha256" || d.Validate() != nil {
			return nil, fmt.Errorf("unsupported layer diffID %q", d)
		}
		hexes[i] = d.Encoded()
	}
	s.lease(hexes)
	defer s.release(hexes)

	if err := s.ensureLayers(ctx, layers, hexes); err != nil {
		return nil, err
	}

	blobs := map[string][]byte{manifestDigest: manifestRaw, configDigest: configRaw}
	for d, raw := range in.extraBlobs {
		blobs[d] = raw
	}
	blobSizes := map[string]int64{}
	size := uint64(len(manifestRaw)) + uint64(len(configRaw))
	for d, raw := range blobs {
		if err := s.writeBlob(d, raw); err != nil {
			return nil, err
		}
		blobSizes[d] = int64(len(raw))
	}
	for _, l := range manifest.Layers {
		size += uint64(l.Size)
		// A layer already unpacked for another image is not fetched again,
		// so its blob may be absent; record only blobs that exist.
		if fi, err := os.Stat(s.blobPath(l.Digest.String())); err == nil {
			blobSizes[l.Digest.String()] = fi.Size()
		}
	}

	rec := &imageRecord{
		Image: Image{
			ID:          configDigest,
			RepoTags:    in.tags,
			RepoDigests: in.digestRefs,
			Size:        size,
			Config:      config.Config,
			Layers:      make([]string, len(diffIDs)),
		},
		ManifestDigest: manifestDigest,
	}
	for i, d := range diffIDs {
		rec.Layers[i] = d.String()
	}
	for d := range blobSizes {
		rec.Blobs = append(rec.Blobs, d)
	}
	rec.Blobs = sortedUnique(rec.Blobs)

	s.flightMu.Lock()
	pending := map[string]layerRecord{}
	for _, h := range hexes {
		if r, ok := s.pending[h]; ok {
			pending[h] = r
		}
	}
	s.flightMu.Unlock()

	failpoint.Hit("image-pull-before-commit")
	var added layerRecord
	err = s.db.Update(func(tx *store.Tx) error {
		added = layerRecord{}
		for h, r := range pending {
			if err := tx.Get(bucketLayers, h, &layerRecord{}); err == nil {
				continue
			}
			if err := tx.Put(bucketLayers, h, r); err != nil {
				return err
			}
			added.Bytes += r.Bytes
			added.Inodes += r.Inodes
		}
		for d, sz := range blobSizes {
			if err := tx.Get(bucketBlobs, d, &blobRecord{}); err == nil {
				continue
			}
			if err := tx.Put(bucketBlobs, d, blobRecord{Size: sz}); err != nil {
				return err
			}
			added.Bytes += sz
			added.Inodes++
		}
		var old imageRecord
		if err := tx.Get(bucketImages, rec.ID, &old); err == nil {
			rec.RepoTags = append(rec.RepoTags, old.RepoTags...)
			rec.RepoDigests = append(rec.RepoDigests, old.RepoDigests...)
			rec.Pinned = old.Pinned
			rec.Blobs = sortedUnique(append(rec.Blobs, old.Blobs...))
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		rec.RepoTags = sortedUnique(rec.RepoTags)
		rec.RepoDigests = sortedUnique(rec.RepoDigests)
		for _, ref := range append(append([]string{}, in.tags...), in.digestRefs...) {
			if err := moveRef(tx, ref, rec.ID); err != nil {
				return err
			}
		}
		return tx.Put(bucketImages, rec.ID, rec)
	})
	if err != nil {
		return nil, fmt.Errorf("record image %s: %w", rec.ID, err)
	}
	s.usedBytes.Add(added.Bytes)
	s.usedInodes.Add(added.Inodes)
	s.flightMu.Lock()
	for h := range pending {
		delete(s.pending, h)
	}
	s.flightMu.Unlock()
	return &rec.Image, nil
}

// moveRef points ref at id, taking it away from the image that had it:
// re-pulling a tag that moved upstream moves it here too. The old image
// stays, untagged, as with containerd; kubelet's GC removes it.
func moveRef(tx *store.Tx, ref, id string) error {
	var prev string
	err := tx.Get(bucketRefs, ref, &prev)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err == nil && prev != id {
		var old imageRecord
		if err := tx.Get(bucketImages, prev, &old); err == nil {
			old.RepoTags = without(old.RepoTags, ref)
			old.RepoDigests = without(old.RepoDigests, ref)
			if err := tx.Put(bucketImages, prev, &old); err != nil {
				return err
			}
		}
	}
	return tx.Put(bucketRefs, ref, id)
}

func without(ss []string, x string) []string {
	out := ss[:0:0]
	for _, s := range ss {
		if s != x {
			out = append(out, s)
		}
	}
	return out
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// lease marks layers as in use by a pull so a concurrent Remove keeps them.
func (s *Store) lease(hexes []string) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	for _, h := range hexes {
		s.leases[h]++
	}
}

func (s *Store) release(hexes []string) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	for _, h := range hexes {
		if s.leases[h]--; s.leases[h] <= 0 {
			delete(s.leases, h)
		}
	}
}

// ensureLayers unpacks the missing layers, a few at a time.
func (s *Store) ensureLayers(ctx context.Context, layers []v1.Layer, hexes []string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, maxParallelLayers)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	for i := range layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			if err := s.ensureLayer(ctx, layers[i], hexes[i]); err != nil {
				once.Do(func() { firstErr = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// ensureLayer makes sure layers/<diffHex> exists, unpacking it at most once
// however many pulls want it at the same time.
func (s *Store) ensureLayer(ctx context.Context, l v1.Layer, diffHex string) error {
	for {
		if _, err := os.Lstat(s.layerDir(diffHex)); err == nil {
			return nil
		}
		s.flightMu.Lock()
		if f, ok := s.flights[diffHex]; ok {
			s.flightMu.Unlock()
			select {
			case <-f.done:
				if f.err == nil {
					return nil
				}
				// The other pull failed (maybe its caller gave up): try ourselves.
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		f := &flight{done: make(chan struct{})}
		s.flights[diffHex] = f
		s.flightMu.Unlock()

		stats, err := s.fetchLayer(ctx, l, diffHex)
		s.flightMu.Lock()
		if err == nil {
			s.pending[diffHex] = layerRecord(stats)
		}
		delete(s.flights, diffHex)
		f.err = err
		s.flightMu.Unlock()
		close(f.done)
		return err
	}
}

// fetchLayer streams the compressed layer once: into the blob store, through
// the decompressor, into the tar extractor, hashing both sides to verify the
// digest and the diffID before either is renamed into place.
func (s *Store) fetchLayer(ctx context.Context, l v1.Layer, diffHex string) (unpackStats, error) {
	digest, err := l.Digest()
	if err != nil {
		return unpackStats{}, fmt.Errorf("layer digest: %w", err)
	}
	log := s.log.With("layer", digest.String(), "diffID", diffHex)
	rc, err := l.Compressed()
	if err != nil {
		return unpackStats{}, fmt.Errorf("fetch layer %s: %w", digest, err)
	}
	defer rc.Close()

	blobTmp, err := os.CreateTemp(s.path("tmp"), "blob-")
	if err != nil {
		return unpackStats{}, fmt.Errorf("create blob temp file: %w", err)
	}
	defer os.Remove(blobTmp.Name())
	defer blobTmp.Close()
	dirTmp, err := os.MkdirTemp(s.path("tmp"), "layer-")
	if err != nil {
		return unpackStats{}, fmt.Errorf("create layer temp dir: %w", err)
	}
	defer os.RemoveAll(dirTmp)

	compressedHash := sha256.New()
	src := &ctxReader{ctx: ctx, r: io.TeeReader(rc, io.MultiWriter(blobTmp, compressedHash))}
	plain, err := decompress(src)
	if err != nil {
		return unpackStats{}, fmt.Errorf("layer %s: %w", digest, err)
	}
	defer plain.Close()
	diffHash := sha256.New()
	tee := io.TeeReader(plain, diffHash)
	stats, err := unpackLayer(ctx, tee, dirTmp)
	if err != nil {
		return stats, fmt.Errorf("layer %s: %w", digest, err)
	}
	// Hash the tar's trailing padding and anything after it, and read the
	// compressed stream to its end so its digest covers every byte.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return stats, fmt.Errorf("layer %s: %w", digest, err)
	}
	if _, err := io.Copy(io.Discard, src); err != nil {
		return stats, fmt.Errorf("layer %s: %w", digest, err)
	}
	if got := hexSum(compressedHash); digest.Algorithm == "sha256" && got != digest.Hex {
		return stats, fmt.Errorf("layer %s: content has digest sha256:%s", digest, got)
	}
	if got := hexSum(diffHash); got != diffHex {
		return stats, fmt.Errorf("layer %s: uncompressed content has digest sha256:%s, config says sha256:%s", digest, got, diffHex)
	}
	failpoint.Hit("image-pull-after-unpack")
	if err := blobTmp.Close(); err != nil {
		return stats, fmt.Errorf("write blob: %w", err)
	}
	if err := os.Rename(blobTmp.Name(), s.blobPath(digest.String())); err != nil {
		return stats, fmt.Errorf("store blob: %w", err)
	}
	if err := os.Rename(dirTmp, s.layerDir(diffHex)); err != nil {
		return stats, fmt.Errorf("store layer: %w", err)
	}
	failpoint.Hit("image-pull-after-layer")
	log.Debug("layer unpacked", "bytes", stats.Bytes, "inodes", stats.Inodes)
	return stats, nil
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// writeBlob stores a small blob (manifest, config, index) already in memory.
func (s *Store) writeBlob(digest string, raw []byte) error {
	if digestOf(raw) != digest {
		return fmt.Errorf("blob %s: content does not match its digest", digest)
	}
	p := s.blobPath(digest)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	f, err := os.CreateTemp(s.path("tmp"), "blob-")
	if err != nil {
		return fmt.Errorf("write blob %s: %w", digest, err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(raw)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		return fmt.Errorf("write blob %s: %w", digest, err)
	}
	return nil
}

// decompress sniffs the stream instead of trusting the media type: docker
// and OCI media types for the same bytes vary between registries and tools.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read layer: %w", err)
	}
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case len(magic) == 4 && bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	default:
		return io.NopCloser(br), nil
	}
}

// ctxReader stops a long copy when the caller gives up.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
