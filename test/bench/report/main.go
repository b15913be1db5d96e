// Command report turns podbench's JSON records (compare.sh's results.jsonl)
// into one table of medians and ratios (pod-shim / containerd) and one
// picture: pod-ready latency CDFs of both runtimes at each client count, and
// memory per pod against N when density runs are present.
//
// It is its own module so that the plotting library (gonum/plot, chosen as
// the maintained pure-Go plotter that writes PNG without cgo or a browser)
// stays out of pod-shim's dependency graph.
//
//	go run . -in results.jsonl -png compare.png
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"log"
	"os"
	"slices"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Result mirrors podbench's JSON record.
type Result struct {
	Runtime        string                `json:"runtime"`
	Mode           string                `json:"mode"`
	Clients        int                   `json:"clients"`
	Pods           int                   `json:"pods"`
	Calls          map[string][3]float64 `json:"calls_ms"`
	PodReady       []float64             `json:"pod_ready_ms"`
	StartPerSec    float64               `json:"start_pods_per_s"`
	TeardownPerSec float64               `json:"teardown_pods_per_s"`
	CPUPerPodMs    float64               `json:"cpu_ms_per_pod"`
	PSSPerPodMiB   float64               `json:"pss_mib_per_pod"`
	UsedPerPodMiB  float64               `json:"used_mib_per_pod"`
	DaemonRSSMiB   float64               `json:"daemon_rss_mib"`
	IdleCPUPercent float64               `json:"idle_cpu_percent"`
	ListP99Ms      map[string]float64    `json:"list_p99_ms"`
	RestartMs      float64               `json:"restart_ms"`

	FloorSerialMs          float64 `json:"floor_serial_ms"`
	FloorOverlapMs         float64 `json:"floor_overlap_ms"`
	FloorOverlapMeasuredMs float64 `json:"floor_overlap_measured_ms"`
}

const (
	ours   = "pod-shim"
	theirs = "containerd"
)

func main() {
	in := flag.String("in", "results.jsonl", "podbench records")
	png := flag.String("png", "", "write the picture here")
	flag.Parse()
	rs, err := load(*in)
	if err != nil {
		log.Fatal(err)
	}
	table(rs)
	floorTable(rs)
	if *png != "" {
		if err := picture(rs, *png); err != nil {
			log.Fatal(err)
		}
	}
}

func load(path string) ([]Result, error) {
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

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func pct(sorted []float64, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}

// row collects one figure's per-round values for both runtimes.
type row struct {
	name       string
	ours, them []float64
	higherWins bool
}

func (r row) print() {
	a, b := median(r.ours), median(r.them)
	ratio := "-"
	if a != 0 && b != 0 {
		ratio = fmt.Sprintf("%.2f", a/b)
	}
	fmt.Printf("| %-36s | %10.2f | %10.2f | %6s |\n", r.name, a, b, ratio)
}

func table(rs []Result) {
	fmt.Printf("| %-36s | %10s | %10s | %6s |\n", "figure (median of rounds)", ours, theirs, "ratio")
	fmt.Printf("|%s|%s|%s|%s|\n", strings.Repeat("-", 38), strings.Repeat("-", 12), strings.Repeat("-", 12), strings.Repeat("-", 8))
	var clients []int
	for _, r := range rs {
		if r.Mode == "lifecycle" && !slices.Contains(clients, r.Clients) {
			clients = append(clients, r.Clients)
		}
	}
	slices.Sort(clients)
	for _, c := range clients {
		rows := map[string]*row{}
		var order []string
		add := func(name string, rt string, v float64) {
			if rows[name] == nil {
				rows[name] = &row{name: name}
				order = append(order, name)
			}
			switch rt {
			case ours:
				rows[name].ours = append(rows[name].ours, v)
			case theirs:
				rows[name].them = append(rows[name].them, v)
			}
		}
		for _, r := range rs {
			if r.Mode != "lifecycle" || r.Clients != c {
				continue
			}
			add(fmt.Sprintf("c=%d pod-ready p50 ms", c), r.Runtime, pct(r.PodReady, 50))
			add(fmt.Sprintf("c=%d pod-ready p99 ms", c), r.Runtime, pct(r.PodReady, 99))
			add(fmt.Sprintf("c=%d start pods/s", c), r.Runtime, r.StartPerSec)
			add(fmt.Sprintf("c=%d teardown pods/s", c), r.Runtime, r.TeardownPerSec)
			add(fmt.Sprintf("c=%d CPU ms per pod lifecycle", c), r.Runtime, r.CPUPerPodMs)
			add(fmt.Sprintf("c=%d PSS MiB per running pod", c), r.Runtime, r.PSSPerPodMiB)
			add(fmt.Sprintf("c=%d used MiB per running pod", c), r.Runtime, r.UsedPerPodMiB)
			add(fmt.Sprintf("c=%d daemon RSS MiB", c), r.Runtime, r.DaemonRSSMiB)
			calls := make([]string, 0, len(r.Calls))
			for n := range r.Calls {
				calls = append(calls, n)
			}
			sort.Strings(calls)
			for _, n := range calls {
				add(fmt.Sprintf("c=%d %s p50 ms", c, n), r.Runtime, r.Calls[n][0])
			}
		}
		for _, n := range order {
			rows[n].print()
		}
	}
	var ns []int
	for _, r := range rs {
		if (r.Mode == "density" || r.Mode == "restart") && !slices.Contains(ns, r.Pods) {
			ns = append(ns, r.Pods)
		}
	}
	slices.Sort(ns)
	for _, n := range ns {
		rows := map[string]*row{}
		var order []string
		add := func(name, rt string, v float64) {
			if v == 0 {
				return
			}
			if rows[name] == nil {
				rows[name] = &row{name: name}
				order = append(order, name)
			}
			if rt == ours {
				rows[name].ours = append(rows[name].ours, v)
			} else if rt == theirs {
				rows[name].them = append(rows[name].them, v)
			}
		}
		for _, r := range rs {
			if r.Pods != n {
				continue
			}
			switch r.Mode {
			case "density":
				add(fmt.Sprintf("N=%d PSS MiB per pod", n), r.Runtime, r.PSSPerPodMiB)
				add(fmt.Sprintf("N=%d used MiB per pod", n), r.Runtime, r.UsedPerPodMiB)
				add(fmt.Sprintf("N=%d daemon RSS MiB", n), r.Runtime, r.DaemonRSSMiB)
				add(fmt.Sprintf("N=%d idle CPU %% of a core", n), r.Runtime, r.IdleCPUPercent)
				names := make([]string, 0, len(r.ListP99Ms))
				for k := range r.ListP99Ms {
					names = append(names, k)
				}
				sort.Strings(names)
				for _, k := range names {
					add(fmt.Sprintf("N=%d %s p99 ms", n, k), r.Runtime, r.ListP99Ms[k])
				}
			case "restart":
				add(fmt.Sprintf("N=%d restart to serving ms", n), r.Runtime, r.RestartMs)
			}
		}
		for _, k := range order {
			rows[k].print()
		}
	}
}

// floorSteps is podbench's floor step order.
var floorSteps = []string{"netns", "cni-add", "pause-create", "pause-start", "pause-run", "overlay", "app-create", "app-start", "app-run",
	"app-kill", "app-delete", "pause-kill", "pause-delete", "cni-del", "umount", "netns-remove"}

// floorTable prints the floor (podbench -mode floor: the same pod start and
// stop by the host tools alone) and each runtime's one-client pod-ready and
// CPU per pod against it, all medians of rounds.
func floorTable(rs []Result) {
	var serial, overlap, measured, cpu []float64
	steps := map[string][]float64{}
	for _, r := range rs {
		if r.Mode != "floor" {
			continue
		}
		serial = append(serial, r.FloorSerialMs)
		overlap = append(overlap, r.FloorOverlapMs)
		if r.FloorOverlapMeasuredMs > 0 {
			measured = append(measured, r.FloorOverlapMeasuredMs)
		}
		cpu = append(cpu, r.CPUPerPodMs)
		for n, p := range r.Calls {
			steps[n] = append(steps[n], p[0])
		}
	}
	if len(serial) == 0 {
		return
	}
	fs, fo, fc := median(serial), median(overlap), median(cpu)
	fmt.Printf("\nfloor (host tools alone, %d round(s)): serial %.1f ms, overlap %.1f ms computed", len(serial), fs, fo)
	if len(measured) > 0 {
		fmt.Printf(" / %.1f ms measured", median(measured))
	}
	fmt.Printf(", CPU %.1f ms per pod lifecycle\nfloor step p50 ms:", fc)
	for _, n := range floorSteps {
		if v, ok := steps[n]; ok {
			fmt.Printf(" %s %.1f", n, median(v))
		}
	}
	fmt.Println()
	for _, rt := range []string{ours, theirs} {
		var ready, rcpu []float64
		for _, r := range rs {
			if r.Mode == "lifecycle" && r.Clients == 1 && r.Runtime == rt {
				ready = append(ready, pct(r.PodReady, 50))
				rcpu = append(rcpu, r.CPUPerPodMs)
			}
		}
		if len(ready) == 0 {
			continue
		}
		p := median(ready)
		fmt.Printf("pod-ready vs floor: %-10s c=1 pod-ready p50 %.1f ms = %.2f× floor serial, %.2f× floor overlap",
			rt, p, p/fs, p/fo)
		if c := median(rcpu); c > 0 && fc > 0 {
			fmt.Printf("; CPU per pod %.1f ms = %.2f× floor", c, c/fc)
		}
		fmt.Println()
	}
}

var colors = map[string]color.Color{
	ours:   color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	theirs: color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
}

func picture(rs []Result, path string) error {
	var clients []int
	for _, r := range rs {
		if r.Mode == "lifecycle" && !slices.Contains(clients, r.Clients) {
			clients = append(clients, r.Clients)
		}
	}
	slices.Sort(clients)
	var plots []*plot.Plot
	for _, c := range clients {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("pod-ready latency, %d client(s)", c)
		p.X.Label.Text = "ms (RunPodSandbox + CreateContainer + StartContainer)"
		p.Y.Label.Text = "fraction of pods"
		for _, rt := range []string{ours, theirs} {
			var all []float64
			for _, r := range rs {
				if r.Mode == "lifecycle" && r.Clients == c && r.Runtime == rt {
					all = append(all, r.PodReady...)
				}
			}
			if len(all) == 0 {
				continue
			}
			slices.Sort(all)
			pts := make(plotter.XYs, len(all))
			for i, v := range all {
				pts[i] = plotter.XY{X: v, Y: float64(i+1) / float64(len(all))}
			}
			l, err := plotter.NewLine(pts)
			if err != nil {
				return err
			}
			l.Color = colors[rt]
			l.Width = vg.Points(1.5)
			p.Add(l)
			p.Legend.Add(rt, l)
		}
		p.Legend.Top = false
		p.Legend.Left = false
		plots = append(plots, p)
	}
	dens := plot.New()
	dens.Title.Text = "memory per running pod against N"
	dens.X.Label.Text = "pods running (N)"
	dens.Y.Label.Text = "MiB per pod (system used-memory growth / N)"
	haveDensity := false
	for _, rt := range []string{ours, theirs} {
		var pts plotter.XYs
		for _, r := range rs {
			if r.Runtime == rt && (r.Mode == "density" || (r.Mode == "lifecycle" && r.Clients == 1)) && r.UsedPerPodMiB > 0 {
				pts = append(pts, plotter.XY{X: float64(r.Pods), Y: r.UsedPerPodMiB})
			}
		}
		if len(pts) == 0 {
			continue
		}
		haveDensity = true
		sort.Slice(pts, func(i, j int) bool { return pts[i].X < pts[j].X })
		l, s, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		l.Color, s.Color = colors[rt], colors[rt]
		dens.Add(l, s)
		dens.Legend.Add(rt, l, s)
	}
	if haveDensity {
		dens.Legend.Top = true
		plots = append(plots, dens)
	}
	if len(plots) == 0 {
		return fmt.Errorf("no lifecycle or density records to draw")
	}
	const w, h = 14 * vg.Centimeter, 10 * vg.Centimeter
	img := vgimg.New(w*vg.Length(len(plots)), h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(plots), PadX: vg.Millimeter, PadY: vg.Millimeter}
	canvases := plot.Align([][]*plot.Plot{plots}, tiles, dc)
	for i, p := range plots {
		p.Draw(canvases[0][i])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		return err
	}
	return f.Close()
}
