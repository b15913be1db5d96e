// Package store is pod-shim's durable metadata: one bbolt file under the root
// dir, the single source of truth for sandboxes, containers and images.
//
// Records are JSON documents in named buckets. The domain packages own their
// record types; the store only knows buckets and keys, so a new field in a
// domain type needs no change here.
package store

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// ErrNotFound is returned (wrapped) when a key is absent.
var ErrNotFound = errors.New("not found")

// DB is the metadata database.
type DB struct {
	db *bolt.DB
}

// Open opens (creating if needed) the bbolt file at path. A second daemon on
// the same root dir fails after timeout instead of hanging forever, and a
// corrupted file is reported, never silently replaced.
func Open(path string, timeout time.Duration) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create store dir: %w", err)
	}
	// NoFreelistSync trades a slower open for fewer writes per commit: commits
	// sit on the pod-start path, opens do not.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open %s: locked by another process (is another pod-shim running with the same root dir?)", path)
		}
		return nil, fmt.Errorf("open %s: %w (if the file is corrupted, stop pod-shim, move the file aside and restart: pods will be treated as lost)", path, err)
	}
	return &DB{db: db}, nil
}

// Close closes the file.
func (d *DB) Close() error { return d.db.Close() }

// Tx is a read-write or read-only transaction.
type Tx struct{ tx *bolt.Tx }

// Update runs fn in one atomic, durable write transaction.
func (d *DB) Update(fn func(*Tx) error) error {
	return d.db.Update(func(tx *bolt.Tx) error { return fn(&Tx{tx}) })
}

// View runs fn in a read-only transaction.
func (d *DB) View(fn func(*Tx) error) error {
	return d.db.View(func(tx *bolt.Tx) error { return fn(&Tx{tx}) })
}

// Put stores v as JSON under bucket/key.
func (t *Tx) Put(bucket, key string, v any) error {
	b, err := t.tx.CreateBucketIfNotExists([]byte(bucket))
	if err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", bucket, key, err)
	}
	return b.Put([]byte(key), data)
}

// Get decodes bucket/key into v, or returns ErrNotFound.
func (t *Tx) Get(bucket, key string, v any) error {
	b := t.tx.Bucket([]byte(bucket))
	if b == nil {
		return fmt.Errorf("%s/%s: %w", bucket, key, ErrNotFound)
	}
	data := b.Get([]byte(key))
	if data == nil {
		return fmt.Errorf("%s/%s: %w", bucket, key, ErrNotFound)
	}
	return json.Unmarshal(data, v)
}

// Delete removes bucket/key; absent keys are not an error.
func (t *Tx) Delete(bucket, key string) error {
	b := t.tx.Bucket([]byte(bucket))
	if b == nil {
		return nil
	}
	return b.Delete([]byte(key))
}

// ForEach calls fn with every key and raw JSON value of bucket.
func (t *Tx) ForEach(bucket string, fn func(key string, raw []byte) error) error {
	b := t.tx.Bucket([]byte(bucket))
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error { return fn(string(k), v) })
}

// Put stores v in its own transaction.
func (d *DB) Put(bucket, key string, v any) error {
	return d.Update(func(t *Tx) error { return t.Put(bucket, key, v) })
}

// Get reads bucket/key into v.
func (d *DB) Get(bucket, key string, v any) error {
	return d.View(func(t *Tx) error { return t.Get(bucket, key, v) })
}

// GetByPrefix reads into v the record of bucket whose key equals or is
// the one key starting with idOrPrefix (see Resolve).
func (d *DB) GetByPrefix(bucket, idOrPrefix string, v any) error {
	id, err := d.Resolve(bucket, idOrPrefix)
	if err != nil {
		return err
	}
	return d.Get(bucket, id, v)
}

// Delete removes bucket/key in its own transaction.
func (d *DB) Delete(bucket, key string) error {
	return d.Update(func(t *Tx) error { return t.Delete(bucket, key) })
}

// List decodes every value of bucket with newT and returns them in key order.
func List[T any](d *DB, bucket string) ([]*T, error) {
	var out []*T
	err := d.View(func(t *Tx) error {
		return t.ForEach(bucket, func(_ string, raw []byte) error {
			v := new(T)
			if err := json.Unmarshal(raw, v); err != nil {
				return err
			}
			out = append(out, v)
			return nil
		})
	})
	return out, err
}

// ErrAmbiguous is returned (wrapped) when an id prefix matches several keys.
var ErrAmbiguous = errors.New("ambiguous id prefix")

// NewID returns a fresh 64-hex-character id, the form crictl users expect.
func NewID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

// Resolve returns the one key of bucket that equals or starts with prefix.
func (d *DB) Resolve(bucket, prefix string) (string, error) {
	if prefix == "" {
		return "", fmt.Errorf("empty id: %w", ErrNotFound)
	}
	var found string
	err := d.View(func(t *Tx) error {
		b := t.tx.Bucket([]byte(bucket))
		if b == nil {
			return fmt.Errorf("%s: %w", prefix, ErrNotFound)
		}
		if b.Get([]byte(prefix)) != nil {
			found = prefix
			return nil
		}
		c := b.Cursor()
		for k, _ := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, _ = c.Next() {
			if found != "" {
				return fmt.Errorf("%s: %w", prefix, ErrAmbiguous)
			}
			found = string(k)
		}
		if found == "" {
			return fmt.Errorf("%s: %w", prefix, ErrNotFound)
		}
		return nil
	})
	return found, err
}
