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
	"path/filepath"
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

// inspected is what commitImage learns from an image's manifest and config
// before it fetches any layer.
type inspected struct {
	manifestRaw, configRaw       []byte
	manifestDigest, configDigest string
	manifest                     *v1.Manifest
	config                       ocispec.Image
	layers                       []v1.Layer
	hexes                        []string // diffID hex of each layer, base first
}

// commitImage fetches and unpacks what the store lacks of in.img, then
// records the image, moving its tags from any image that had them. Nothing
// is recorded unless everything is on disk and verified, and a failed
// commit takes away the layers it unpacked.
func (s *Store) commitImage(ctx context.Context, in ingest) (_ *Image, err error) {
	im, err := s.inspect(in.img)
	if err != nil {
		return nil, err
	}
	s.lease(im.hexes)
	defer s.release(im.hexes)
	defer func() {
		if err != nil {
			s.discardPending(im.hexes)
		}
	}()
	if err := s.ensureLayers(ctx, im.layers, im.hexes, newByteBudget(s.limits.MaxPullBytes)); err != nil {
		return nil, err
	}
	blobSizes, err := s.writeBlobs(im, in.extraBlobs)
	if err != nil {
		return nil, err
	}
	rec := newImageRecord(im, in, blobSizes)
	pending := s.pendingOf(im.hexes)
	failpoint.Hit("image-pull-before-commit")
	var added layerRecord
	err = s.db.Update(func(tx *store.Tx) error {
		var err error
		added, err = recordImage(tx, rec, pending, blobSizes, append(append([]string{}, in.tags...), in.digestRefs...))
		return err
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

// inspect reads and checks img's manifest and config against each other
// and against the store's limits, before anything is fetched.
func (s *Store) inspect(img v1.Image) (*inspected, error) {
	im := &inspected{}
	var err error
	if im.manifestRaw, err = img.RawManifest(); err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	if n := int64(len(im.manifestRaw)); n > s.limits.MaxManifestBytes {
		return nil, manifestTooBig(n, s.limits.MaxManifestBytes)
	}
	if im.manifest, err = v1.ParseManifest(bytes.NewReader(im.manifestRaw)); err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	if n := len(im.manifest.Layers); n > s.limits.MaxLayers {
		return nil, fmt.Errorf("%w: %d layers, over the limit of %d (registry.max_layers)", ErrLimit, n, s.limits.MaxLayers)
	}
	if n := im.manifest.Config.Size; n > s.limits.MaxConfigBytes {
		return nil, fmt.Errorf("%w: image config of %d bytes is over the %d-byte limit (registry.max_config_bytes)", ErrLimit, n, s.limits.MaxConfigBytes)
	}
	if im.configRaw, err = img.RawConfigFile(); err != nil {
		return nil, fmt.Errorf("read image config: %w", err)
	}
	if n := int64(len(im.configRaw)); n > s.limits.MaxConfigBytes {
		return nil, fmt.Errorf("%w: image config of %d bytes is over the %d-byte limit (registry.max_config_bytes)", ErrLimit, n, s.limits.MaxConfigBytes)
	}
	im.configDigest = digestOf(im.configRaw)
	if im.configDigest != im.manifest.Config.Digest.String() {
		return nil, fmt.Errorf("image config digest %s does not match manifest (%s)", im.configDigest, im.manifest.Config.Digest)
	}
	if err := json.Unmarshal(im.configRaw, &im.config); err != nil {
		return nil, fmt.Errorf("parse image config: %w", err)
	}
	if im.config.OS != "" && im.config.OS != "linux" {
		return nil, fmt.Errorf("image is for %s, not linux", im.config.OS)
	}
	if im.layers, err = img.Layers(); err != nil {
		return nil, fmt.Errorf("list layers: %w", err)
	}
	diffIDs := im.config.RootFS.DiffIDs
	if len(diffIDs) != len(im.layers) {
		return nil, fmt.Errorf("image config lists %d layers, manifest %d", len(diffIDs), len(im.layers))
	}
	im.manifestDigest = digestOf(im.manifestRaw)
	im.hexes = make([]string, len(diffIDs))
	for i, d := range diffIDs {
		if d.Algorithm() != "sha256" || d.Validate() != nil {
			return nil, fmt.Errorf("unsupported layer diffID %q", d)
		}
		im.hexes[i] = d.Encoded()
	}
	return im, nil
}

// writeBlobs stores the manifest, config and extra blobs (an index) and
// returns the size of every blob the image holds, layers included.
func (s *Store) writeBlobs(im *inspected, extra map[string][]byte) (map[string]int64, error) {
	blobs := map[string][]byte{im.manifestDigest: im.manifestRaw, im.configDigest: im.configRaw}
	for d, raw := range extra {
		blobs[d] = raw
	}
	sizes := map[string]int64{}
	for d, raw := range blobs {
		if err := s.writeBlob(d, raw); err != nil {
			return nil, err
		}
		sizes[d] = int64(len(raw))
	}
	for _, l := range im.manifest.Layers {
		// A layer already unpacked for another image is not fetched again,
		// so its blob may be absent; record only blobs that exist.
		if fi, err := os.Stat(s.blobPath(l.Digest.String())); err == nil {
			sizes[l.Digest.String()] = fi.Size()
		}
	}
	return sizes, nil
}

// newImageRecord is the record of a committed image, before it is merged
// with an earlier record of the same ID.
func newImageRecord(im *inspected, in ingest, blobSizes map[string]int64) *imageRecord {
	size := uint64(len(im.manifestRaw)) + uint64(len(im.configRaw))
	for _, l := range im.manifest.Layers {
		size += uint64(l.Size)
	}
	rec := &imageRecord{
		Image: Image{
			ID:          im.configDigest,
			RepoTags:    in.tags,
			RepoDigests: in.digestRefs,
			Size:        size,
			Config:      im.config.Config,
			Layers:      make([]string, len(im.hexes)),
		},
		ManifestDigest: im.manifestDigest,
	}
	for i, d := range im.config.RootFS.DiffIDs {
		rec.Layers[i] = d.String()
	}
	for d := range blobSizes {
		rec.Blobs = append(rec.Blobs, d)
	}
	rec.Blobs = sortedUnique(rec.Blobs)
	return rec
}

// pendingOf returns the layers of hexes unpacked but not yet recorded.
func (s *Store) pendingOf(hexes []string) map[string]layerRecord {
	s.flightMu.Lock()
	defer s.flightMu.Unlock()
	pending := map[string]layerRecord{}
	for _, h := range hexes {
		if r, ok := s.pending[h]; ok {
			pending[h] = r
		}
	}
	return pending
}

// discardPending removes the layers a failed commit unpacked and nobody
// recorded, unless another pull holds them too: that one will record them.
func (s *Store) discardPending(hexes []string) {
	s.gcMu.Lock()
	var trash []string
	s.flightMu.Lock()
	for _, h := range hexes {
		if _, ok := s.pending[h]; !ok || s.leases[h] > 1 {
			continue
		}
		delete(s.pending, h)
		t, err := os.MkdirTemp(s.path("tmp"), "rm-")
		if err == nil {
			err = os.Rename(s.layerDir(h), filepath.Join(t, "l"))
			trash = append(trash, t)
		}
		if err != nil {
			s.log.Warn("discard layer of a failed pull", "layer", h, "err", err)
		}
	}
	s.flightMu.Unlock()
	s.gcMu.Unlock()
	s.emptyTrash(trash)
}

// recordImage writes rec, the layers and blobs it adds and its refs in tx,
// merging with an earlier record of the same image. It returns the disk
// usage the store did not account for yet.
func recordImage(tx *store.Tx, rec *imageRecord, pending map[string]layerRecord, blobSizes map[string]int64, refs []string) (layerRecord, error) {
	var added layerRecord
	for h, r := range pending {
		if err := tx.Get(bucketLayers, h, &layerRecord{}); err == nil {
			continue
		}
		if err := tx.Put(bucketLayers, h, r); err != nil {
			return added, err
		}
		added.Bytes += r.Bytes
		added.Inodes += r.Inodes
	}
	for d, sz := range blobSizes {
		if err := tx.Get(bucketBlobs, d, &blobRecord{}); err == nil {
			continue
		}
		if err := tx.Put(bucketBlobs, d, blobRecord{Size: sz}); err != nil {
			return added, err
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
		return added, err
	}
	rec.RepoTags = sortedUnique(rec.RepoTags)
	rec.RepoDigests = sortedUnique(rec.RepoDigests)
	for _, ref := range refs {
		if err := moveRef(tx, ref, rec.ID); err != nil {
			return added, err
		}
	}
	return added, tx.Put(bucketImages, rec.ID, rec)
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
func (s *Store) ensureLayers(ctx context.Context, layers []v1.Layer, hexes []string, budget *byteBudget) error {
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
			if err := s.ensureLayer(ctx, layers[i], hexes[i], budget); err != nil {
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

// beforeFlightCheck lets a test land another pull's layer between
// ensureLayer's unlocked check and its locked one.
var beforeFlightCheck = func() {}

// ensureLayer makes sure layers/<diffHex> exists, unpacking it at most once
// however many pulls want it at the same time.
func (s *Store) ensureLayer(ctx context.Context, l v1.Layer, diffHex string, budget *byteBudget) error {
	for {
		if _, err := os.Lstat(s.layerDir(diffHex)); err == nil {
			return nil
		}
		beforeFlightCheck()
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
		// Again under the lock: a flight that ended between the check
		// above and here has put the layer in place (it renames before it
		// leaves), and a second unpack would fail renaming onto it.
		if _, err := os.Lstat(s.layerDir(diffHex)); err == nil {
			s.flightMu.Unlock()
			return nil
		}
		f := &flight{done: make(chan struct{})}
		s.flights[diffHex] = f
		s.flightMu.Unlock()

		stats, err := s.fetchLayer(ctx, l, diffHex, budget)
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
func (s *Store) fetchLayer(ctx context.Context, l v1.Layer, diffHex string, budget *byteBudget) (unpackStats, error) {
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
	plain, err := decompress(src, s.limits.MaxZstdWindow)
	if err != nil {
		return unpackStats{}, fmt.Errorf("layer %s: %w", digest, err)
	}
	defer plain.Close()
	diffHash := sha256.New()
	tee := io.TeeReader(plain, diffHash)
	stats, err := unpackLayerBudget(ctx, tee, dirTmp, budget)
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
// A zstd frame asking for a window over maxWindow fails instead of making
// the decoder allocate it.
func decompress(r io.Reader, maxWindow uint64) (io.ReadCloser, error) {
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
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(maxWindow), zstd.WithDecoderMaxMemory(maxWindow))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zstdLimitErr{zr.IOReadCloser(), maxWindow}, nil
	default:
		return io.NopCloser(br), nil
	}
}

// zstdLimitErr names the limit a zstd stream ran into.
type zstdLimitErr struct {
	io.ReadCloser
	max uint64
}

func (z zstdLimitErr) Read(p []byte) (int, error) {
	n, err := z.ReadCloser.Read(p)
	if errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		err = fmt.Errorf("%w: zstd window over %d bytes (registry.max_zstd_window_bytes): %v", ErrLimit, z.max, err)
	}
	return n, err
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
