// Package image is the runtime's image service: it pulls images from OCI
// registries and imports archives, keeps each blob once and each layer
// unpacked once, and gives every container an overlayfs rootfs on top of
// those layers.
//
// Layout under Options.Root:
//
//	blobs/sha256/<hex>      compressed layers, manifests, configs (verified)
//	layers/<diffID hex>/    unpacked layers, renamed into place when complete
//	containers/<id>/        upper/ and work/ of a container, and its usage record
//	tmp/                    work in progress; emptied by New
//
// Metadata (images, refs, layer and blob sizes) lives in the bbolt store.
package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pod-shim/pod-shim/pkg/store"
)

// Bucket names in the shared store; all start with "image".
const (
	bucketImages = "image"       // image ID -> imageRecord
	bucketRefs   = "image.ref"   // normalized tag or digest ref -> image ID
	bucketLayers = "image.layer" // diffID hex -> layerRecord
	bucketBlobs  = "image.blob"  // "sha256:<hex>" -> blobRecord
)

var (
	// ErrNotFound is wrapped by lookups of images that do not exist.
	ErrNotFound = errors.New("image not found")
	// ErrInvalidReference is wrapped when a reference cannot be parsed.
	ErrInvalidReference = errors.New("invalid image reference")
)

// RegistryHost configures how one registry host is reached.
type RegistryHost struct {
	Mirrors  []string // endpoints tried in order before the upstream host; "http://" means plain HTTP
	Insecure bool     // allow plain HTTP / skip TLS verify for the upstream host itself
}

// Options configures a Store.
type Options struct {
	Root       string                  // directory the store owns entirely
	DB         *store.DB               // metadata store
	Registries map[string]RegistryHost // keyed by registry host as written in refs
	Logger     *slog.Logger
	// ObservePull, when set, is told each Pull's bytes fetched from
	// registries, duration and error, for the daemon's metrics.
	ObservePull func(bytes int64, d time.Duration, err error)
	// Limits bound what one pull or import may cost; zero fields take
	// DefaultLimits.
	Limits Limits
}

// Auth holds the credentials of a CRI AuthConfig. Auth is base64 "user:pass".
type Auth struct {
	Username, Password, Auth, ServerAddress, IdentityToken, RegistryToken string
}

// Image is an image as the CRI image service reports it.
type Image struct {
	ID          string              // "sha256:<hex of config digest>"
	RepoTags    []string            // normalized, e.g. "docker.io/library/busybox:latest"
	RepoDigests []string            // "docker.io/library/busybox@sha256:<manifest digest>"
	Size        uint64              // manifest+config+compressed layers, as containerd reports
	Config      ocispec.ImageConfig // the image's runtime configuration
	Layers      []string            // diffIDs, base layer first
	Pinned      bool
}

// FsUsage is the usage of the image filesystem.
type FsUsage struct {
	Mountpoint string
	UsedBytes  uint64
	InodesUsed uint64
}

// imageRecord is what the store keeps per image.
type imageRecord struct {
	Image
	ManifestDigest string   `json:"manifestDigest"` // platform manifest
	Blobs          []string `json:"blobs"`          // every blob this image holds: index, manifest, config, layers
}

type layerRecord struct {
	Bytes  int64 `json:"bytes"`
	Inodes int64 `json:"inodes"`
}

type blobRecord struct {
	Size int64 `json:"size"`
}

// Store is the image service.
type Store struct {
	root       string
	db         *store.DB
	log        *slog.Logger
	registries map[string]RegistryHost
	overlayOpt string // extra overlay mount options decided once at New
	limits     Limits

	observePull func(bytes int64, d time.Duration, err error)

	// Transports are shared by all pulls so connections to a registry are reused.
	secureTransport   http.RoundTripper
	insecureTransport http.RoundTripper

	// gcMu serializes garbage collection against anything that starts using a
	// layer (a pull leasing it, a rootfs recording it). It is never held
	// across a network transfer or an unpack.
	gcMu   sync.Mutex
	leases map[string]int        // diffID hex -> in-flight pulls using it
	usage  map[string]*usageFile // container ID -> layers its rootfs uses

	flightMu sync.Mutex
	flights  map[string]*flight     // diffID hex -> unpack in progress
	pending  map[string]layerRecord // unpacked, not yet recorded in the DB

	usedBytes  atomic.Int64
	usedInodes atomic.Int64
}

// flight lets concurrent pulls of one layer wait for a single unpack.
type flight struct {
	done chan struct{}
	err  error
}

// New opens the store at opts.Root, discarding what a crash left half made.
func New(opts Options) (*Store, error) {
	if opts.Root == "" || opts.DB == nil {
		return nil, errors.New("image store: Root and DB are required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("image root: %w", err)
	}
	s := &Store{
		root:        root,
		db:          opts.DB,
		log:         log.With("component", "image"),
		registries:  opts.Registries,
		overlayOpt:  overlayExtraOptions(),
		limits:      opts.Limits.withDefaults(),
		observePull: opts.ObservePull,
		leases:      map[string]int{},
		usage:       map[string]*usageFile{},
		flights:     map[string]*flight{},
		pending:     map[string]layerRecord{},
	}
	s.secureTransport, s.insecureTransport = newTransports()
	// Anything in tmp is an interrupted download, unpack, import or removal.
	if err := os.RemoveAll(s.path("tmp")); err != nil {
		return nil, fmt.Errorf("clean image tmp dir: %w", err)
	}
	for _, d := range []string{"tmp", "blobs/sha256", "layers", "containers"} {
		if err := os.MkdirAll(s.path(d), 0o700); err != nil {
			return nil, fmt.Errorf("create image dir: %w", err)
		}
	}
	if err := s.loadUsage(); err != nil {
		return nil, err
	}
	if err := s.reconcile(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.root}, elem...)...)
}

func (s *Store) layerDir(diffHex string) string { return filepath.Join(s.root, "layers", diffHex) }

func (s *Store) blobPath(digest string) string {
	return filepath.Join(s.root, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

// reconcile makes the disk and the DB agree after a crash: a layer dir with
// no record was renamed into place by a pull that never committed; a record
// whose dir is gone cannot be used. It also loads the usage counters.
func (s *Store) reconcile() error {
	layers := map[string]layerRecord{}
	blobs := map[string]blobRecord{}
	err := s.db.View(func(tx *store.Tx) error {
		if err := tx.ForEach(bucketLayers, func(k string, raw []byte) error {
			var r layerRecord
			if err := jsonUnmarshal(raw, &r); err != nil {
				return fmt.Errorf("layer record %s: %w", k, err)
			}
			layers[k] = r
			return nil
		}); err != nil {
			return err
		}
		return tx.ForEach(bucketBlobs, func(k string, raw []byte) error {
			var r blobRecord
			if err := jsonUnmarshal(raw, &r); err != nil {
				return fmt.Errorf("blob record %s: %w", k, err)
			}
			blobs[k] = r
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("load image records: %w", err)
	}
	entries, err := os.ReadDir(s.path("layers"))
	if err != nil {
		return fmt.Errorf("read layers dir: %w", err)
	}
	onDisk := map[string]bool{}
	for _, e := range entries {
		if _, ok := layers[e.Name()]; !ok {
			s.log.Warn("removing unrecorded layer left by an interrupted pull", "layer", e.Name())
			if err := os.RemoveAll(s.layerDir(e.Name())); err != nil {
				return fmt.Errorf("remove orphan layer: %w", err)
			}
			continue
		}
		onDisk[e.Name()] = true
	}
	var missing []string
	for k := range layers {
		if !onDisk[k] {
			missing = append(missing, k)
			delete(layers, k)
		}
	}
	if len(missing) > 0 {
		s.log.Warn("forgetting layers missing on disk; images using them must be pulled again", "layers", missing)
		if err := s.db.Update(func(tx *store.Tx) error {
			for _, k := range missing {
				if err := tx.Delete(bucketLayers, k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("forget missing layers: %w", err)
		}
	}
	for _, r := range layers {
		s.usedBytes.Add(r.Bytes)
		s.usedInodes.Add(r.Inodes)
	}
	for _, r := range blobs {
		s.usedBytes.Add(r.Size)
		s.usedInodes.Add(1)
	}
	return nil
}

// Get returns the image named by a normalized or familiar reference, a
// name@digest, a full or bare image ID, or a unique ID prefix.
func (s *Store) Get(refOrID string) (*Image, error) {
	var rec *imageRecord
	err := s.db.View(func(tx *store.Tx) error {
		var err error
		rec, err = resolve(tx, refOrID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &rec.Image, nil
}

// List returns every image, ordered by ID.
func (s *Store) List() ([]*Image, error) {
	recs, err := store.List[imageRecord](s.db, bucketImages)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]*Image, 0, len(recs))
	for _, r := range recs {
		out = append(out, &r.Image)
	}
	return out, nil
}

// isHex reports whether s is non-empty lowercase hex.
func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// resolve finds the record for refOrID inside tx.
func resolve(tx *store.Tx, refOrID string) (*imageRecord, error) {
	getID := func(id string) (*imageRecord, error) {
		var r imageRecord
		if err := tx.Get(bucketImages, id, &r); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, fmt.Errorf("%s: %w", refOrID, ErrNotFound)
			}
			return nil, fmt.Errorf("read image %s: %w", id, err)
		}
		return &r, nil
	}
	hexPart := strings.TrimPrefix(refOrID, "sha256:")
	if isHex(hexPart) && (len(hexPart) == 64 || hexPart != refOrID) {
		if len(hexPart) == 64 {
			return getID("sha256:" + hexPart)
		}
		return byPrefix(tx, refOrID, hexPart)
	}
	p, err := parseRef(refOrID)
	if err == nil {
		var id string
		err := tx.Get(bucketRefs, p.lookupKey(), &id)
		if err == nil {
			return getID(id)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("read ref %s: %w", p.lookupKey(), err)
		}
	}
	// A short hex string that is not a known name may be an ID prefix,
	// as crictl users type them.
	if isHex(refOrID) && len(refOrID) >= 3 {
		return byPrefix(tx, refOrID, refOrID)
	}
	if err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%s: %w", refOrID, ErrNotFound)
}

func byPrefix(tx *store.Tx, refOrID, hexPrefix string) (*imageRecord, error) {
	var match []string
	err := tx.ForEach(bucketImages, func(k string, _ []byte) error {
		if strings.HasPrefix(k, "sha256:"+hexPrefix) {
			match = append(match, k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan images: %w", err)
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("%s: %w", refOrID, ErrNotFound)
	case 1:
		var r imageRecord
		if err := tx.Get(bucketImages, match[0], &r); err != nil {
			return nil, fmt.Errorf("read image %s: %w", match[0], err)
		}
		return &r, nil
	default:
		return nil, fmt.Errorf("image ID prefix %q is ambiguous (%d images)", hexPrefix, len(match))
	}
}

// SetPinned marks an image as pinned (kubelet's GC leaves pinned images,
// such as the sandbox image, alone) or unpins it.
func (s *Store) SetPinned(refOrID string, pinned bool) error {
	return s.db.Update(func(tx *store.Tx) error {
		rec, err := resolve(tx, refOrID)
		if err != nil {
			return err
		}
		rec.Pinned = pinned
		return tx.Put(bucketImages, rec.ID, rec)
	})
}

// Remove deletes the image refOrID resolves to, with all its tags, and the
// layers and blobs no other image or container rootfs uses. An absent image
// is not an error.
func (s *Store) Remove(refOrID string) error {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	var trash []string
	err := s.db.Update(func(tx *store.Tx) error {
		rec, err := resolve(tx, refOrID)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := tx.Delete(bucketImages, rec.ID); err != nil {
			return err
		}
		for _, ref := range append(append([]string{}, rec.RepoTags...), rec.RepoDigests...) {
			if err := tx.Delete(bucketRefs, ref); err != nil {
				return err
			}
		}
		trash, err = s.collectLocked(tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("remove image %s: %w", refOrID, err)
	}
	s.emptyTrash(trash)
	return nil
}

// gc deletes layers and blobs that nothing uses any more. It writes to the
// DB only when there is something to delete, so the common case costs one
// read transaction.
func (s *Store) gc() error {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	var found bool
	if err := s.db.View(func(tx *store.Tx) error {
		layers, blobs, err := s.unusedLocked(tx)
		found = len(layers)+len(blobs) > 0
		return err
	}); err != nil || !found {
		return err
	}
	var trash []string
	err := s.db.Update(func(tx *store.Tx) error {
		var err error
		trash, err = s.collectLocked(tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("collect unused layers: %w", err)
	}
	s.emptyTrash(trash)
	return nil
}

// unusedLocked lists recorded layers and blobs that no image, container
// rootfs or in-flight pull references. gcMu must be held.
func (s *Store) unusedLocked(tx *store.Tx) (layers map[string]layerRecord, blobs map[string]blobRecord, err error) {
	usedLayers := map[string]bool{}
	usedBlobs := map[string]bool{}
	for k := range s.leases {
		usedLayers[k] = true
	}
	for _, u := range s.usage {
		for _, l := range u.Layers {
			usedLayers[strings.TrimPrefix(l, "sha256:")] = true
		}
	}
	err = tx.ForEach(bucketImages, func(_ string, raw []byte) error {
		var r imageRecord
		if err := jsonUnmarshal(raw, &r); err != nil {
			return err
		}
		for _, l := range r.Layers {
			usedLayers[strings.TrimPrefix(l, "sha256:")] = true
		}
		for _, b := range r.Blobs {
			usedBlobs[b] = true
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	layers, blobs = map[string]layerRecord{}, map[string]blobRecord{}
	if err := tx.ForEach(bucketLayers, func(k string, raw []byte) error {
		if !usedLayers[k] {
			var r layerRecord
			if err := jsonUnmarshal(raw, &r); err != nil {
				return err
			}
			layers[k] = r
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	if err := tx.ForEach(bucketBlobs, func(k string, raw []byte) error {
		if !usedBlobs[k] {
			var r blobRecord
			if err := jsonUnmarshal(raw, &r); err != nil {
				return err
			}
			blobs[k] = r
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	return layers, blobs, nil
}

// collectLocked deletes the records of unused layers and blobs in tx and
// moves their files into tmp, whence emptyTrash (or the next New) deletes
// them. Moving is a rename, so it is cheap to do under gcMu; a crash after
// the commit leaves files New treats as orphans. gcMu must be held.
func (s *Store) collectLocked(tx *store.Tx) ([]string, error) {
	layers, blobs, err := s.unusedLocked(tx)
	if err != nil {
		return nil, err
	}
	var trash []string
	for k, r := range layers {
		if err := tx.Delete(bucketLayers, k); err != nil {
			return nil, err
		}
		t, err := os.MkdirTemp(s.path("tmp"), "rm-")
		if err != nil {
			return nil, fmt.Errorf("make trash dir: %w", err)
		}
		if err := os.Rename(s.layerDir(k), filepath.Join(t, "l")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("move layer %s to trash: %w", k, err)
		}
		trash = append(trash, t)
		s.usedBytes.Add(-r.Bytes)
		s.usedInodes.Add(-r.Inodes)
		s.log.Debug("layer unused, removing", "layer", k)
	}
	for k, r := range blobs {
		if err := tx.Delete(bucketBlobs, k); err != nil {
			return nil, err
		}
		// A blob file is one inode and small next to its layer: removing it
		// now is cheaper than a rename to trash.
		if err := os.Remove(s.blobPath(k)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove blob %s: %w", k, err)
		}
		s.usedBytes.Add(-r.Size)
		s.usedInodes.Add(-1)
	}
	return trash, nil
}

// emptyTrash deletes moved-away layers outside any lock: a big layer takes
// a while to delete and nothing can reach it any more.
func (s *Store) emptyTrash(trash []string) {
	for _, t := range trash {
		if err := os.RemoveAll(t); err != nil {
			s.log.Warn("remove unused layer", "path", t, "err", err)
		}
	}
}

// FsInfo reports the image filesystem usage from counters kept as layers
// and blobs come and go, so it never walks the tree.
func (s *Store) FsInfo() (FsUsage, error) {
	return FsUsage{
		Mountpoint: s.root,
		UsedBytes:  uint64(max(s.usedBytes.Load(), 0)),
		InodesUsed: uint64(max(s.usedInodes.Load(), 0)),
	}, nil
}

func jsonUnmarshal(raw []byte, v any) error { return json.Unmarshal(raw, v) }

// sortedUnique returns the sorted set of ss.
func sortedUnique(ss []string) []string {
	m := map[string]bool{}
	out := []string{}
	for _, s := range ss {
		if s != "" && !m[s] {
			m[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
