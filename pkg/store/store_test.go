package store_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pod-shim/pod-shim/pkg/store"
)

type rec struct {
	Name string
	N    int
}

func open(t *testing.T) (*store.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sub", "meta.db")
	db, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

func TestPutGetDeleteList(t *testing.T) {
	db, _ := open(t)
	if err := db.Put("b", "k2", rec{"two", 2}); err != nil {
		t.Fatal(err)
	}
	if err := db.Put("b", "k1", rec{"one", 1}); err != nil {
		t.Fatal(err)
	}
	var got rec
	if err := db.Get("b", "k1", &got); err != nil || got != (rec{"one", 1}) {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	// Overwrite.
	if err := db.Put("b", "k1", rec{"uno", 11}); err != nil {
		t.Fatal(err)
	}
	list, err := store.List[rec](db, "b")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || *list[0] != (rec{"uno", 11}) || *list[1] != (rec{"two", 2}) {
		t.Fatalf("List = %+v, want key order [k1 k2]", list)
	}
	if err := db.Delete("b", "k1"); err != nil {
		t.Fatal(err)
	}
	if err := db.Get("b", "k1", &got); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get deleted = %v, want ErrNotFound", err)
	}
	// Deleting absent keys and from absent buckets is not an error.
	if err := db.Delete("b", "k1"); err != nil {
		t.Fatalf("Delete absent key = %v", err)
	}
	if err := db.Delete("nobucket", "k"); err != nil {
		t.Fatalf("Delete absent bucket = %v", err)
	}
	if list, err := store.List[rec](db, "nobucket"); err != nil || len(list) != 0 {
		t.Fatalf("List of absent bucket = %v, %v", list, err)
	}
}

func TestGetMissing(t *testing.T) {
	db, _ := open(t)
	if err := db.Put("b", "k", rec{}); err != nil {
		t.Fatal(err)
	}
	var r rec
	for _, tc := range []struct{ bucket, key string }{{"b", "absent"}, {"nobucket", "k"}} {
		if err := db.Get(tc.bucket, tc.key, &r); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%s, %s) = %v, want ErrNotFound", tc.bucket, tc.key, err)
		}
	}
}

func TestTxAtomic(t *testing.T) {
	db, _ := open(t)
	boom := errors.New("boom")
	err := db.Update(func(tx *store.Tx) error {
		if err := tx.Put("b", "a", rec{"a", 1}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v", err)
	}
	var r rec
	if err := db.Get("b", "a", &r); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rolled-back put visible: %v", err)
	}
}

func TestResolve(t *testing.T) {
	db, _ := open(t)
	ids := []string{"abc123", "abd456", "abc123ff", "ffff"}
	for _, id := range ids {
		if err := db.Put("c", id, rec{Name: id}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, bucket, prefix, want string
		wantErr                    error
	}{
		{"exact id", "c", "ffff", "ffff", nil},
		{"exact id that is also a prefix of another", "c", "abc123", "abc123", nil},
		{"unique prefix", "c", "abd", "abd456", nil},
		{"unique prefix 2", "c", "f", "ffff", nil},
		{"unique longer prefix", "c", "abc123f", "abc123ff", nil},
		{"ambiguous prefix", "c", "ab", "", store.ErrAmbiguous},
		{"ambiguous prefix 2", "c", "abc", "", store.ErrAmbiguous},
		{"empty prefix", "c", "", "", store.ErrNotFound},
		{"unknown", "c", "0123", "", store.ErrNotFound},
		{"past the end", "c", "zzz", "", store.ErrNotFound},
		{"unknown bucket", "nob", "ab", "", store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.Resolve(tt.bucket, tt.prefix)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Resolve(%q) = %q, %v; want %v", tt.prefix, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Resolve(%q) = %q, %v; want %q", tt.prefix, got, err, tt.want)
			}
		})
	}
}

func TestNewID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{64}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := store.NewID()
		if !re.MatchString(id) {
			t.Fatalf("NewID() = %q, want 64 lowercase hex", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestSecondOpenFails(t *testing.T) {
	db, path := open(t)
	if err := db.Put("b", "k", rec{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	db2, err := store.Open(path, 100*time.Millisecond)
	if err == nil {
		db2.Close()
		t.Fatal("second Open of a file in use succeeded")
	}
	if !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second Open error = %v, want it to mention another process", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("second Open took %v despite a 100ms timeout", d)
	}
	// Once the first is closed the file opens again, with its data.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db3, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db3.Close()
	var r rec
	if err := db3.Get("b", "k", &r); err != nil {
		t.Fatalf("data lost across reopen: %v", err)
	}
}

// A damaged store must stop the daemon with a recovery hint, never be
// silently replaced (that would forget every pod on the node).
func TestCorruptedStoreRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func([]byte) []byte
	}{
		{"flipped meta pages", func(b []byte) []byte {
			for i := 0; i < 8192 && i < len(b); i++ {
				b[i] ^= 0x5a
			}
			return b
		}},
		{"not a database", func([]byte) []byte { return []byte("garbage") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, path := open(t)
			if err := db.Put("b", "k", rec{Name: "x"}); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			bad := tc.corrupt(data)
			if err := os.WriteFile(path, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = store.Open(path, time.Second)
			if err == nil || !strings.Contains(err.Error(), "move the file aside") {
				t.Fatalf("Open of a corrupted store = %v, want an error with a recovery hint", err)
			}
			if after, _ := os.ReadFile(path); string(after) != string(bad) {
				t.Fatal("Open modified the corrupted file")
			}
		})
	}
}
