package image

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
)

// Limits bound what one image may cost the node while it is pulled or
// imported. Anything over a limit fails the pull with ErrLimit and leaves
// nothing behind. Zero fields take the defaults of DefaultLimits, except
// MaxPullBytes, where zero means no budget.
type Limits struct {
	// MaxManifestBytes bounds a manifest or index document. Real ones are a
	// few KiB; ggcr alone would buffer up to 100 MiB.
	MaxManifestBytes int64
	// MaxConfigBytes bounds the image config JSON, held in memory and in
	// the metadata store.
	MaxConfigBytes int64
	// MaxLayers bounds the layer count, as containerd does (128): overlayfs
	// cannot stack many more, and each layer costs a goroutine and a dir.
	MaxLayers int
	// MaxZstdWindow bounds the zstd decoder's window, the memory a single
	// layer's decompression may claim whatever its frame header asks for.
	MaxZstdWindow uint64
	// MaxPullBytes, when set, is the budget of one pull: the bytes its
	// layers may write (file contents, plus a 512-byte header per entry).
	// It stops decompression bombs before they fill the disk.
	MaxPullBytes int64
}

// DefaultLimits are the limits a Store uses unless told otherwise.
var DefaultLimits = Limits{
	MaxManifestBytes: 4 << 20,
	MaxConfigBytes:   8 << 20,
	MaxLayers:        128,
	MaxZstdWindow:    128 << 20,
}

// ErrLimit is wrapped by every error that reports an exceeded Limits field.
var ErrLimit = errors.New("image exceeds a limit")

func (l Limits) withDefaults() Limits {
	if l.MaxManifestBytes <= 0 {
		l.MaxManifestBytes = DefaultLimits.MaxManifestBytes
	}
	if l.MaxConfigBytes <= 0 {
		l.MaxConfigBytes = DefaultLimits.MaxConfigBytes
	}
	if l.MaxLayers <= 0 {
		l.MaxLayers = DefaultLimits.MaxLayers
	}
	if l.MaxZstdWindow == 0 {
		l.MaxZstdWindow = DefaultLimits.MaxZstdWindow
	}
	if l.MaxPullBytes < 0 {
		l.MaxPullBytes = 0
	}
	return l
}

// byteBudget is what is left of one pull's MaxPullBytes, shared by the
// layers it unpacks in parallel. A nil budget is unlimited.
type byteBudget struct {
	limit int64
	left  atomic.Int64
}

func newByteBudget(limit int64) *byteBudget {
	if limit <= 0 {
		return nil
	}
	b := &byteBudget{limit: limit}
	b.left.Store(limit)
	return b
}

// take charges n bytes, failing once the budget is spent.
func (b *byteBudget) take(n int64) error {
	if b == nil || n == 0 {
		return nil
	}
	if b.left.Add(-n) < 0 {
		return fmt.Errorf("%w: the pull would write more than %d bytes (registry.max_pull_bytes)", ErrLimit, b.limit)
	}
	return nil
}

// reader charges what r yields.
func (b *byteBudget) reader(r io.Reader) io.Reader {
	if b == nil {
		return r
	}
	return &budgetReader{r: r, b: b}
}

type budgetReader struct {
	r io.Reader
	b *byteBudget
}

func (br *budgetReader) Read(p []byte) (int, error) {
	n, err := br.r.Read(p)
	if berr := br.b.take(int64(n)); berr != nil {
		return n, berr
	}
	return n, err
}

// limitManifest fails a registry's manifest response over max bytes before
// ggcr buffers it: by its Content-Length when it has one, else while it is
// read.
func limitManifest(req *http.Request, resp *http.Response, max int64) (*http.Response, error) {
	if !strings.Contains(req.URL.Path, "/manifests/") || resp.Body == nil || resp.StatusCode != http.StatusOK {
		return resp, nil
	}
	if resp.ContentLength > max {
		resp.Body.Close()
		return nil, manifestTooBig(resp.ContentLength, max)
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: max, max: max}
	return resp, nil
}

func manifestTooBig(n, max int64) error {
	return fmt.Errorf("%w: manifest of %d bytes is over the %d-byte limit (registry.max_manifest_bytes)", ErrLimit, n, max)
}

type limitedBody struct {
	io.ReadCloser
	left, max int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	n, err := l.ReadCloser.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n, manifestTooBig(l.max-l.left, l.max)
	}
	return n, err
}
