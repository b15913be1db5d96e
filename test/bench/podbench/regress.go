package main

// Regress mode: the CI guard's verdict. A runtime's absolute times move with
// the machine and its load, so the guard compares ratios to the floor (the
// host tools alone, measured in the same step) with the ratios recorded in
// the repo for this machine class.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Keys of the baseline file.
const (
	keyPodReady = "podready_over_floor_serial" // lifecycle pod-ready p50 / floor_serial_ms
	keyCPU      = "cpu_over_floor_cpu"         // lifecycle cpu_ms_per_pod / floor cpu_ms_per_pod
)

// parseBaseline reads "key value" lines; '#' starts a comment. Both keys
// must be present and positive.
func parseBaseline(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"key value\", got %q", n, sc.Text())
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("line %d: %s: want a positive number, got %q", n, f[0], f[1])
		}
		out[f[0]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, k := range []string{keyPodReady, keyCPU} {
		if _, ok := out[k]; !ok {
			return nil, fmt.Errorf("no %s", k)
		}
	}
	return out, nil
}

// median of unsorted values; the mean of the middle two for an even count.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 0 {
		return (s[m-1] + s[m]) / 2
	}
	return s[m]
}

// regressRatio is one guarded ratio and the per-round figures behind it.
type regressRatio struct {
	key, what        string
	runtime, floor   []float64 // per round
	ratio, recorded  float64
	limit            float64 // recorded × the allowed factor
	runtimeM, floorM float64 // medians
}

func (r regressRatio) ok() bool { return r.ratio <= r.limit }

// regressRatios takes the lifecycle (one client) and floor records of the
// guard's interleaved rounds and makes the two ratios from the medians of
// the rounds, so one round slowed by the machine's other work moves them
// little.
func regressRatios(rs []Result, recorded map[string]float64, factor float64) ([]regressRatio, error) {
	pr := regressRatio{key: keyPodReady, what: "pod-ready p50 / floor serial p50"}
	cpu := regressRatio{key: keyCPU, what: "CPU per pod / floor CPU per pod"}
	for _, r := range rs {
		switch {
		case r.Mode == "lifecycle" && r.Clients == 1:
			slices.Sort(r.PodReady)
			pr.runtime = append(pr.runtime, pct(r.PodReady, 50))
			cpu.runtime = append(cpu.runtime, r.CPUPerPodMs)
		case r.Mode == "floor":
			pr.floor = append(pr.floor, r.FloorSerialMs)
			cpu.floor = append(cpu.floor, r.CPUPerPodMs)
		}
	}
	out := []regressRatio{pr, cpu}
	for i := range out {
		x := &out[i]
		if len(x.runtime) == 0 || len(x.floor) == 0 {
			return nil, fmt.Errorf("%s: need lifecycle (-clients 1) and floor records, have %d and %d", x.key, len(x.runtime), len(x.floor))
		}
		x.runtimeM, x.floorM = median(x.runtime), median(x.floor)
		if x.runtimeM <= 0 || x.floorM <= 0 {
			return nil, fmt.Errorf("%s: a median is zero (runtime %.2f, floor %.2f): was -cgroup given?", x.key, x.runtimeM, x.floorM)
		}
		x.ratio = x.runtimeM / x.floorM
		x.recorded = recorded[x.key]
		x.limit = x.recorded * factor
	}
	return out, nil
}

// runRegress prints the figures and the verdict; ok is false when a ratio
// is over its limit.
func runRegress(w io.Writer, jsonPath, baselinePath string, factor float64) (ok bool, err error) {
	if jsonPath == "" || baselinePath == "" {
		return false, fmt.Errorf("regress: -json and -baseline are required")
	}
	bf, err := os.Open(baselinePath)
	if err != nil {
		return false, err
	}
	defer bf.Close()
	recorded, err := parseBaseline(bf)
	if err != nil {
		return false, fmt.Errorf("%s: %w", baselinePath, err)
	}
	rs, err := loadResults(jsonPath)
	if err != nil {
		return false, err
	}
	ratios, err := regressRatios(rs, recorded, factor)
	if err != nil {
		return false, err
	}
	ok = true
	for _, x := range ratios {
		verdict := "ok"
		if !x.ok() {
			verdict = "REGRESSION"
			ok = false
		}
		fmt.Fprintf(w, "%-34s %6.2f / %6.2f = %5.2f  recorded %5.2f  limit %5.2f  %s\n",
			x.what, x.runtimeM, x.floorM, x.ratio, x.recorded, x.limit, verdict)
		fmt.Fprintf(w, "  rounds: runtime %s  floor %s\n", join(x.runtime), join(x.floor))
	}
	// One line for scripts collecting the spread over runs.
	fmt.Fprintf(w, "ratios %s=%.3f %s=%.3f\n", ratios[0].key, ratios[0].ratio, ratios[1].key, ratios[1].ratio)
	return ok, nil
}

func join(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strings.Join(s, " ")
}

func loadResults(path string) ([]Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Result
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var r Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}
