package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFloorArithmetic(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name            string
		steps           map[string]time.Duration
		serial, overlap time.Duration
	}{
		{
			name: "CNI longer than pause",
			steps: map[string]time.Duration{"netns": 1 * ms, "cni-add": 40 * ms, "pause-create": 20 * ms, "pause-start": 5 * ms,
				"overlay": 1 * ms, "app-create": 20 * ms, "app-start": 5 * ms, "cni-del": 99 * ms},
			serial:  92 * ms, // teardown steps are not part of the start
			overlap: 1*ms + 40*ms + 1*ms + 20*ms + 5*ms,
		},
		{
			name: "pause longer than CNI",
			steps: map[string]time.Duration{"netns": 2 * ms, "cni-add": 10 * ms, "pause-create": 30 * ms, "pause-start": 6 * ms,
				"overlay": 1 * ms, "app-create": 25 * ms, "app-start": 6 * ms},
			serial:  80 * ms,
			overlap: 2*ms + 36*ms + 1*ms + 25*ms + 6*ms,
		},
		{
			name: "runc run -d",
			steps: map[string]time.Duration{"netns": 1 * ms, "cni-add": 20 * ms, "pause-run": 30 * ms,
				"overlay": 1 * ms, "app-run": 25 * ms},
			serial:  77 * ms,
			overlap: 1*ms + 30*ms + 1*ms + 25*ms,
		},
		{name: "no steps", steps: map[string]time.Duration{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := floorSerial(tt.steps); got != tt.serial {
				t.Errorf("floorSerial = %v, want %v", got, tt.serial)
			}
			if got := floorOverlap(tt.steps); got != tt.overlap {
				t.Errorf("floorOverlap = %v, want %v", got, tt.overlap)
			}
		})
	}
}

func TestMedianAndPct(t *testing.T) {
	tests := []struct {
		in       []float64
		median   float64
		p50, p99 float64
		sorted   []float64
	}{
		{in: nil},
		{in: []float64{5}, median: 5, p50: 5, p99: 5},
		{in: []float64{3, 1, 2}, median: 2, p50: 2, p99: 3, sorted: []float64{1, 2, 3}},
		{in: []float64{4, 1, 3, 2}, median: 2.5, p50: 2, p99: 4, sorted: []float64{1, 2, 3, 4}},
	}
	for _, tt := range tests {
		before := append([]float64(nil), tt.in...)
		if got := median(tt.in); got != tt.median {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.median)
		}
		for i := range before {
			if before[i] != tt.in[i] {
				t.Errorf("median reordered its input: %v", tt.in)
			}
		}
		s := tt.sorted
		if s == nil {
			s = tt.in
		}
		if got := pct(s, 50); got != tt.p50 {
			t.Errorf("pct(%v, 50) = %v, want %v", s, got, tt.p50)
		}
		if got := pct(s, 99); got != tt.p99 {
			t.Errorf("pct(%v, 99) = %v, want %v", s, got, tt.p99)
		}
	}
}

func TestParseBaseline(t *testing.T) {
	good := "# machine: 2-core VM\n\npodready_over_floor_serial 1.10  # measured\ncpu_over_floor_cpu 2.5\n"
	b, err := parseBaseline(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if b[keyPodReady] != 1.10 || b[keyCPU] != 2.5 {
		t.Errorf("parsed %v", b)
	}
	for name, in := range map[string]string{
		"missing key":  "podready_over_floor_serial 1\n",
		"not a number": "podready_over_floor_serial x\ncpu_over_floor_cpu 1\n",
		"zero":         "podready_over_floor_serial 0\ncpu_over_floor_cpu 1\n",
		"three fields": "podready_over_floor_serial 1 2\ncpu_over_floor_cpu 1\n",
	} {
		if _, err := parseBaseline(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error for %q", name, in)
		}
	}
}

func TestRegressRatios(t *testing.T) {
	recorded := map[string]float64{keyPodReady: 1.0, keyCPU: 2.0}
	life := func(p50, cpu float64) Result {
		return Result{Mode: "lifecycle", Clients: 1, PodReady: []float64{p50 - 1, p50, p50 + 1}, CPUPerPodMs: cpu}
	}
	floor := func(serial, cpu float64) Result {
		return Result{Mode: "floor", Clients: 1, FloorSerialMs: serial, CPUPerPodMs: cpu}
	}
	t.Run("medians of rounds", func(t *testing.T) {
		// The middle round is the one a loaded machine slowed: medians ignore it.
		rs := []Result{floor(100, 50), life(100, 100), floor(300, 50), life(400, 400), floor(100, 50), life(120, 110),
			{Mode: "lifecycle", Clients: 8, PodReady: []float64{9999}, CPUPerPodMs: 9999}}
		got, err := regressRatios(rs, recorded, 1.5)
		if err != nil {
			t.Fatal(err)
		}
		if got[0].ratio != 1.2 || got[0].limit != 1.5 || !got[0].ok() {
			t.Errorf("pod-ready: %+v", got[0])
		}
		if got[1].ratio != 2.2 || got[1].limit != 3.0 || !got[1].ok() {
			t.Errorf("cpu: %+v", got[1])
		}
	})
	t.Run("regression", func(t *testing.T) {
		got, err := regressRatios([]Result{floor(100, 50), life(151, 100)}, recorded, 1.5)
		if err != nil {
			t.Fatal(err)
		}
		if got[0].ok() {
			t.Errorf("pod-ready ratio %.2f over limit %.2f passed", got[0].ratio, got[0].limit)
		}
		if !got[1].ok() {
			t.Errorf("cpu ratio %.2f under limit %.2f failed", got[1].ratio, got[1].limit)
		}
	})
	t.Run("missing records", func(t *testing.T) {
		if _, err := regressRatios([]Result{life(100, 100)}, recorded, 1.5); err == nil {
			t.Error("no error without floor records")
		}
		if _, err := regressRatios([]Result{floor(100, 0), life(100, 0)}, recorded, 1.5); err == nil {
			t.Error("no error without CPU figures")
		}
	})
}

func TestRunRegress(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "baseline")
	if err := os.WriteFile(base, []byte("podready_over_floor_serial 1\ncpu_over_floor_cpu 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	records := filepath.Join(dir, "r.jsonl")
	for _, r := range []Result{{Mode: "floor", FloorSerialMs: 100, CPUPerPodMs: 10}, {Mode: "lifecycle", Clients: 1, PodReady: []float64{140}, CPUPerPodMs: 20}} {
		if err := r.save(records); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	ok, err := runRegress(&out, records, base, 1.5)
	if err != nil {
		t.Fatal(err)
	}
	// pod-ready 1.4 is within 1.5; CPU 2.0 is not.
	if ok {
		t.Errorf("passed with a CPU ratio of 2 against a limit of 1.5:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "REGRESSION") || !strings.Contains(out.String(), "ratios podready_over_floor_serial=1.400 cpu_over_floor_cpu=2.000") {
		t.Errorf("output:\n%s", out.String())
	}
}
