package monitor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestCopyStream(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		maxLine int
		want    []string // "F text" / "P text"
	}{
		{"lines", "a\nbb\n", 16, []string{"F a", "F bb"}},
		{"empty line", "\n", 16, []string{"F "}},
		{"unterminated tail is P", "a\nrest", 16, []string{"F a", "P rest"}},
		{"long line split", "0123456789abcdefXYZ\n", 16, []string{"P 0123456789abcdef", "F XYZ"}},
		{"exactly max then newline", "0123456789abcdef\n", 16, []string{"P 0123456789abcdef", "F "}},
		{"long unterminated", strings.Repeat("x", 40), 16, []string{"P " + strings.Repeat("x", 16), "P " + strings.Repeat("x", 16), "P " + strings.Repeat("x", 8)}},
		{"nothing", "", 16, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			lw, err := openLog(path)
			if err != nil {
				t.Fatal(err)
			}
			copyStream(strings.NewReader(tt.input), streamStderr, lw, tt.maxLine, func(err error) { t.Error(err) })
			if err := lw.close(); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range readLog(t, path) {
				if r.stream != streamStderr {
					t.Errorf("stream %q", r.stream)
				}
				tag := "F"
				if r.partial {
					tag = "P"
				}
				got = append(got, tag+" "+r.text)
			}
			if !equal(got, tt.want) {
				t.Errorf("records = %q, want %q", got, tt.want)
			}
		})
	}
}

// Two streams writing at once must never interleave within a record.
func TestLogWriterKeepsRecordsWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	lw, err := openLog(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, stream := range []string{streamStdout, streamStderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			line := strings.Repeat(stream[3:4], 3000)
			for i := range 200 {
				lw.record(stream, false, []byte(line), i%7 == 0)
			}
		}()
	}
	wg.Wait()
	lw.close()
	recs := readLog(t, path)
	if len(recs) != 400 {
		t.Fatalf("%d records, want 400", len(recs))
	}
	for _, r := range recs {
		if r.text != strings.Repeat(r.stream[3:4], 3000) {
			t.Fatalf("record of %s mixed up: %q…", r.stream, r.text[:20])
		}
	}
}

func TestLogReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	lw, err := openLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer lw.close()
	lw.record(streamStdout, false, []byte("one"), false) // still buffered
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := lw.reopen(); err != nil {
		t.Fatal(err)
	}
	lw.record(streamStdout, false, []byte("two"), true)
	if got := lines(readLog(t, path+".1"), "stdout"); !equal(got, []string{"one"}) {
		t.Errorf("old file = %q", got)
	}
	if got := lines(readLog(t, path), "stdout"); !equal(got, []string{"two"}) {
		t.Errorf("new file = %q", got)
	}
}

func TestParseOOMKill(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", 3}, // cgroup v1 memory.oom_control
		{"low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\n", 1},     // cgroup v2 memory.events
		{"under_oom 0\n", -1},                                // kernel without the counter
	}
	for _, tt := range tests {
		if got := parseOOMKill([]byte(tt.in)); got != tt.want {
			t.Errorf("parseOOMKill(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestOOMCounterOfSelf(t *testing.T) {
	// Every host that runs pod-shim has a memory cgroup for this process; the
	// counter must find it (and read it when the kernel reports oom_kill).
	o := oomCounterFor(os.Getpid())
	if o.file == "" {
		t.Skip("no memory cgroup visible")
	}
	if _, err := os.Stat(o.file); err != nil {
		t.Fatalf("counter file %s: %v", o.file, err)
	}
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		ws   syscall.WaitStatus
		want int
	}{
		{syscall.WaitStatus(3 << 8), 3},
		{syscall.WaitStatus(0), 0},
		{syscall.WaitStatus(syscall.SIGKILL), 137},
		{syscall.WaitStatus(syscall.SIGTERM), 143},
	}
	for _, tt := range tests {
		if got := exitStatus(tt.ws); got != tt.want {
			t.Errorf("exitStatus(%#x) = %d, want %d", tt.ws, got, tt.want)
		}
	}
}

func TestExitFile(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, exitsDir), 0o755)
	if _, err := ReadExit(dir, "abc"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("want ErrNotExist, got %v", err)
	}
	want := &Exit{Pid: 42, ExitCode: 137, ExitedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), OOMKilled: true}
	if err := writeExit(dir, "abc", want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadExit(dir, "abc")
	if err != nil {
		t.Fatal(err)
	}
	if *got != *want {
		t.Fatalf("ReadExit = %+v, want %+v", got, want)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, exitsDir)); len(entries) != 1 {
		t.Errorf("temp file left: %v", entries)
	}
	if _, err := ReadExit(dir, "../x"); err == nil {
		t.Error("ids with slashes must be refused")
	}
}

func TestErrorCodesCrossTheWire(t *testing.T) {
	for _, sentinel := range []error{ErrNotFound, ErrNotRunning, ErrExecTimeout} {
		wrapped := fmt.Errorf("exec in x: %w", sentinel)
		remote := &remoteError{msg: wrapped.Error(), sentinel: codes[codeOf(wrapped)]}
		if !errors.Is(remote, sentinel) {
			t.Errorf("%v lost its identity", sentinel)
		}
	}
	if codeOf(errors.New("other")) != "" {
		t.Error("plain errors have no code")
	}
}
