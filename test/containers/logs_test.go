package containers

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

// TestLogRotation: a writer emits 50 000 numbered lines while the log is
// renamed and reopened (the kubelet's rotation) 20 times; the rotated files
// and the live one together hold every line exactly once.
func TestLogRotation(t *testing.T) {
	e := newEnv(t)
	const lines = 50000
	// Paced (a pause every 250 lines) so the 20 rotations land mid-stream
	// on a loaded host too; no timing is asserted.
	cfg := e.config(fmt.Sprintf("i=0; while [ $i -lt %d ]; do echo line-$i; i=$((i+1)); [ $((i %% 250)) -eq 0 ] && usleep 40000; done", lines))
	id, err := e.create(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	path := e.logPath(cfg)
	var files []string
	for r := range 20 {
		rotated := fmt.Sprintf("%s.%d", path, r)
		if err := os.Rename(path, rotated); err != nil {
			t.Fatal(err)
		}
		files = append(files, rotated)
		if _, err := e.rs.ReopenContainerLog(ctx(t), &cri.ReopenContainerLogRequest{ContainerId: id}); err != nil {
			// The writer finished before all rotations: the log is whole.
			if st := e.status(t, id); st.State == cri.ContainerState_CONTAINER_EXITED {
				os.Rename(rotated, path)
				files = files[:len(files)-1]
				t.Logf("writer finished after %d rotations", r)
				break
			}
			t.Fatal(err)
		}
		// Rotate again only once the writer's lines reach the new file, so
		// every rotation splits the stream (and none is an empty file).
		harness.Eventually(t, "lines in the reopened log", 30*time.Second, func() error {
			if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
				return nil
			}
			if e.status(t, id).State == cri.ContainerState_CONTAINER_EXITED {
				return nil
			}
			return harness.ErrNotYet
		})
	}
	e.waitExit(t, id)
	files = append(files, path)
	if len(files)-1 < 20 {
		t.Errorf("only %d rotations happened while the writer ran", len(files)-1)
	}
	seen := map[int]int{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range parseLog(t, data) {
			n, err := strconv.Atoi(strings.TrimPrefix(rec.text, "line-"))
			if err != nil || !rec.full {
				t.Fatalf("unexpected record %+v in %s", rec, f)
			}
			seen[n]++
		}
	}
	var missing, dup []int
	for i := range lines {
		switch seen[i] {
		case 0:
			missing = append(missing, i)
		case 1:
		default:
			dup = append(dup, i)
		}
	}
	sort.Ints(missing)
	if len(missing) > 0 || len(dup) > 0 || len(seen) != lines {
		t.Fatalf("over %d files: %d lines missing (first %v), %d duplicated (first %v), %d distinct", len(files), len(missing), head(missing), len(dup), head(dup), len(seen))
	}
	t.Logf("%d lines over %d files (%d rotations), none lost or duplicated", lines, len(files), len(files)-1)
}

func head(s []int) []int {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}

// TestLongLineSplit: a 100 KiB line arrives as P records (16 KiB max each)
// closed by an F record, which join to the original.
func TestLongLineSplit(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("head -c 102400 /dev/zero | tr '\\0' a; echo")
	id, err := e.create(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	e.waitExit(t, id)
	data, err := os.ReadFile(e.logPath(cfg))
	if err != nil {
		t.Fatal(err)
	}
	recs := parseLog(t, data)
	var joined strings.Builder
	partials := 0
	for i, r := range recs {
		joined.WriteString(r.text)
		if !r.full {
			partials++
			if len(r.text) > 16*1024 {
				t.Errorf("P record %d is %d bytes, over the 16 KiB max", i, len(r.text))
			}
		} else if i != len(recs)-1 {
			t.Errorf("F record before the end at %d", i)
		}
	}
	if partials < 6 || joined.String() != strings.Repeat("a", 102400) {
		t.Fatalf("%d records, %d partial, joined %d bytes; want the 100 KiB line in P pieces", len(recs), partials, joined.Len())
	}
}
