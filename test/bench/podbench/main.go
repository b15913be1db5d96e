// Command podbench drives any CRI endpoint (pod-shim, containerd, CRI-O) with
// the calls a kubelet makes to start and stop pods, and reports what users of
// a node feel: per-call latency, pod-ready latency, start and teardown
// throughput, CPU per pod lifecycle, memory per running pod, and, in density
// mode, how the runtime copes with many pods at once.
//
//	podbench -endpoint /run/pod-shim/pod-shim.sock -image REF -label pod-shim \
//	    -mode lifecycle -clients 1,8 -pods 40 -cgroup /sys/fs/cgroup/cpu,cpuacct/bench-x \
//	    -proc-match /run/psb.X -daemon-pid 1234 -json out.json
//
// It prints one line per figure and, with -json, appends one JSON record per
// (mode, clients) run, which compare.sh aggregates into ratios and plots.
//
// -mode floor needs no runtime: it does each step of a pod's start and stop
// itself with the same host tools (netns, libcni, overlay, runc), to show
// what those cost alone on this machine (floor.go). -mode regress is the CI
// guard's check of such records against the ratios recorded in the repo
// (regress.go).
//
// The runtime's CPU is read from the cgroup the caller started it in
// (-cgroup: cpuacct.usage on v1, cpu.stat usage_usec on v2), which holds the
// daemon and everything it spawns (monitors or shims, runc, CNI plugins).
// Memory per pod is the proportional set size of the per-pod processes:
// those whose command line contains -proc-match (a pod-shim monitor names the
// state dir, a containerd shim its socket) plus their children named pause.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/bench/procmem"
)

type options struct {
	endpoint, image, label, mode, cgroup, procMatch, jsonOut, logDir string
	clients                                                          []int
	pods, daemonPid                                                  int
	idle                                                             time.Duration
	keep                                                             bool

	// floor mode
	runc, pause, busybox, cniConfDir, cniBinDir, runDir string
	measureOverlap, runcRun                             bool
	// regress mode
	baseline string
	limit    float64
}

func main() {
	var o options
	var clients string
	flag.StringVar(&o.endpoint, "endpoint", "", "CRI unix socket (path or unix:// URL)")
	flag.StringVar(&o.image, "image", "", "image for the app container (must be pullable or present)")
	flag.StringVar(&o.label, "label", "runtime", "name of the runtime in the output")
	flag.StringVar(&o.mode, "mode", "lifecycle", "lifecycle | density | cleanup | floor (no runtime: the host tools alone) | regress (check -json records against -baseline)")
	flag.StringVar(&clients, "clients", "1,8", "concurrent clients, comma-separated (lifecycle mode)")
	flag.IntVar(&o.pods, "pods", 40, "pods per run (lifecycle) or pods held running (density)")
	flag.StringVar(&o.cgroup, "cgroup", "", "cgroup dir holding the runtime and all it spawns, for CPU (optional)")
	flag.StringVar(&o.procMatch, "proc-match", "", "string in the command line of per-pod runtime processes, for memory (optional)")
	flag.IntVar(&o.daemonPid, "daemon-pid", 0, "runtime daemon pid, for its RSS (optional)")
	flag.DurationVar(&o.idle, "idle", 60*time.Second, "how long density mode measures idle CPU")
	flag.StringVar(&o.jsonOut, "json", "", "append JSON records to this file")
	flag.StringVar(&o.logDir, "log-dir", "", "pod log directory root (default: a temp dir)")
	flag.BoolVar(&o.keep, "keep", false, "density: leave the pods running (for a restart measurement; -mode cleanup removes them)")
	flag.StringVar(&o.runc, "runc", "runc", "floor: the runc binary (the runtime under test's)")
	flag.StringVar(&o.pause, "pause", "", "floor: the pause binary (e.g. pod-shim-pause from hack/build.sh)")
	flag.StringVar(&o.busybox, "busybox", "/bin/busybox", "floor: a static busybox, the app container's only file")
	flag.StringVar(&o.cniConfDir, "cni-conf-dir", "", "floor: dir whose first .conflist is the pods' network")
	flag.StringVar(&o.cniBinDir, "cni-bin-dir", "/usr/lib/cni", "floor: CNI plugin dirs, colon-separated")
	flag.StringVar(&o.runDir, "run-dir", "/run", "floor: where the run's private dir goes (keep it short, on tmpfs)")
	flag.BoolVar(&o.measureOverlap, "measure-overlap", false, "floor: a second pass running CNI ADD beside the pause start, timed as a whole")
	flag.BoolVar(&o.runcRun, "runc-run", false, "floor: start each container with one `runc run -d` (as pod-shim does) instead of runc create + runc start")
	flag.StringVar(&o.baseline, "baseline", "", "regress: file with the recorded ratios")
	flag.Float64Var(&o.limit, "limit", 1.5, "regress: fail when a ratio exceeds this many times the recorded one")
	probe := flag.String("probe", "", "only wait until this CRI socket answers Version (exit 0), or -wait passes (exit 1)")
	wait := flag.Duration("wait", 30*time.Second, "with -probe: how long to wait")
	flag.Parse()
	if *probe != "" {
		deadline := time.Now().Add(*wait)
		for probeSocket(*probe) != 0 {
			if time.Now().After(deadline) {
				os.Exit(1)
			}
			time.Sleep(5 * time.Millisecond) // polling a socket that has no readiness signal
		}
		os.Exit(0)
	}
	switch o.mode {
	case "floor":
		if err := runFloor(o); err != nil {
			log.Fatalf("podbench: %v", err)
		}
		return
	case "regress":
		ok, err := runRegress(os.Stdout, o.jsonOut, o.baseline, o.limit)
		if err != nil {
			log.Fatalf("podbench: %v", err)
		}
		if !ok {
			os.Exit(1)
		}
		return
	}
	if o.endpoint == "" || o.image == "" {
		log.Fatal("podbench: -endpoint and -image are required")
	}
	for _, s := range strings.Split(clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			log.Fatalf("podbench: bad -clients %q", clients)
		}
		o.clients = append(o.clients, n)
	}
	if o.logDir == "" {
		d, err := os.MkdirTemp("", "podbench-logs-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		o.logDir = d
	}
	if err := run(o); err != nil {
		log.Fatalf("podbench: %v", err)
	}
}

func dial(endpoint string) (*grpc.ClientConn, error) {
	addr := endpoint
	if !strings.HasPrefix(addr, "unix://") {
		addr = "unix://" + addr
	}
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
}

// probeSocket answers whether a CRI server serves on sock (0) or not (1).
func probeSocket(sock string) int {
	conn, err := dial(sock)
	if err != nil {
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := cri.NewRuntimeServiceClient(conn).Version(ctx, &cri.VersionRequest{}); err != nil {
		return 1
	}
	return 0
}

// cleanup stops and removes every pod podbench made (namespace podbench),
// for runs that kept their pods.
func (b *bench) cleanup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	list, err := b.rs.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	var pods []pod
	for _, s := range list.Items {
		if s.Metadata.GetNamespace() == "podbench" {
			pods = append(pods, pod{id: s.Id})
		}
	}
	ctrs, err := b.rs.ListContainers(ctx, &cri.ListContainersRequest{})
	if err != nil {
		return err
	}
	for i := range pods {
		for _, c := range ctrs.Containers {
			if c.PodSandboxId == pods[i].id {
				pods[i].ctr = c.Id
			}
		}
	}
	var t timings
	_, err = parallel(4, len(pods), func(i int) error { return b.teardown(ctx, &t, pods[i]) })
	fmt.Printf("removed %d pods\n", len(pods))
	return err
}

func run(o options) error {
	conn, err := dial(o.endpoint)
	if err != nil {
		return err
	}
	defer conn.Close()
	b := &bench{o: o, rs: cri.NewRuntimeServiceClient(conn), is: cri.NewImageServiceClient(conn), run: strconv.FormatInt(time.Now().UnixNano()%1e6, 36)}
	if o.mode == "cleanup" {
		return b.cleanup()
	}
	if err := b.ensureImage(); err != nil {
		return err
	}
	// One untimed pod first: the first start pays for page-cache misses and
	// lazy initialisation that no later pod sees.
	if _, err := b.lifecycle(1, 1, false); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	switch o.mode {
	case "lifecycle":
		for _, c := range o.clients {
			r, err := b.lifecycle(c, o.pods, true)
			if err != nil {
				return err
			}
			r.print()
			if err := r.save(o.jsonOut); err != nil {
				return err
			}
		}
	case "density":
		r, err := b.density(o.pods)
		if err != nil {
			return err
		}
		r.print()
		return r.save(o.jsonOut)
	default:
		return fmt.Errorf("unknown -mode %q", o.mode)
	}
	return nil
}

type bench struct {
	o   options
	rs  cri.RuntimeServiceClient
	is  cri.ImageServiceClient
	run string
	seq atomic.Int64
}

func (b *bench) ensureImage() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spec := &cri.ImageSpec{Image: b.o.image}
	st, err := b.is.ImageStatus(ctx, &cri.ImageStatusRequest{Image: spec})
	if err != nil {
		return fmt.Errorf("ImageStatus %s: %w", b.o.image, err)
	}
	if st.Image == nil {
		if _, err := b.is.PullImage(ctx, &cri.PullImageRequest{Image: spec}); err != nil {
			return fmt.Errorf("PullImage %s: %w", b.o.image, err)
		}
	}
	return nil
}

// Result is one run's figures; the JSON field names are what compare.sh reads.
type Result struct {
	Runtime string `json:"runtime"`
	Mode    string `json:"mode"`
	Clients int    `json:"clients"`
	Pods    int    `json:"pods"`

	// Milliseconds per call: p50, p90, p99, keyed by CRI call name.
	Calls map[string][3]float64 `json:"calls_ms,omitempty"`
	// Every pod-ready latency in ms, sorted (for the CDF plot).
	PodReady       []float64 `json:"pod_ready_ms,omitempty"`
	StartPerSec    float64   `json:"start_pods_per_s,omitempty"`
	TeardownPerSec float64   `json:"teardown_pods_per_s,omitempty"`
	CPUPerPodMs    float64   `json:"cpu_ms_per_pod,omitempty"`

	PSSPerPodMiB   float64            `json:"pss_mib_per_pod,omitempty"`
	UsedPerPodMiB  float64            `json:"used_mib_per_pod,omitempty"`
	DaemonRSSMiB   float64            `json:"daemon_rss_mib,omitempty"`
	IdleCPUPercent float64            `json:"idle_cpu_percent,omitempty"`
	ListP99Ms      map[string]float64 `json:"list_p99_ms,omitempty"`
	Failed         int                `json:"failed,omitempty"`

	// Floor mode (Calls then holds each step's p50/p90/p99): p50 over pods
	// of the start steps' sum, of the best overlap computed per pod from
	// its own steps (max(CNI ADD, pause create + start) + the rest), and,
	// with -measure-overlap, of a start that really ran them side by side.
	FloorSerialMs          float64 `json:"floor_serial_ms,omitempty"`
	FloorOverlapMs         float64 `json:"floor_overlap_ms,omitempty"`
	FloorOverlapMeasuredMs float64 `json:"floor_overlap_measured_ms,omitempty"`
}

func (r *Result) print() {
	fmt.Printf("== %s %s clients=%d pods=%d\n", r.Runtime, r.Mode, r.Clients, r.Pods)
	names := make([]string, 0, len(r.Calls))
	for n := range r.Calls {
		names = append(names, n)
	}
	slices.Sort(names)
	if r.Mode == "floor" {
		// In the order they run, not by name.
		names = slices.DeleteFunc(slices.Concat(floorStartSteps, floorStopSteps), func(n string) bool {
			_, ok := r.Calls[n]
			return !ok
		})
	}
	for _, n := range names {
		p := r.Calls[n]
		fmt.Printf("%-22s p50 %7.1f ms  p90 %7.1f ms  p99 %7.1f ms\n", n, p[0], p[1], p[2])
	}
	if len(r.PodReady) > 0 {
		fmt.Printf("%-22s p50 %7.1f ms  p90 %7.1f ms  p99 %7.1f ms\n", "pod-ready",
			pct(r.PodReady, 50), pct(r.PodReady, 90), pct(r.PodReady, 99))
	}
	show := func(name string, v float64, unit string) {
		if v != 0 {
			fmt.Printf("%-22s %.2f %s\n", name, v, unit)
		}
	}
	show("floor serial p50", r.FloorSerialMs, "ms")
	show("floor overlap p50", r.FloorOverlapMs, "ms (computed per pod)")
	show("floor overlap p50", r.FloorOverlapMeasuredMs, "ms (measured)")
	show("start throughput", r.StartPerSec, "pods/s")
	show("teardown throughput", r.TeardownPerSec, "pods/s")
	show("cpu per lifecycle", r.CPUPerPodMs, "ms")
	show("pss per pod", r.PSSPerPodMiB, "MiB")
	show("used memory per pod", r.UsedPerPodMiB, "MiB")
	show("daemon rss", r.DaemonRSSMiB, "MiB")
	show("idle cpu", r.IdleCPUPercent, "% of one core")
	for n, v := range r.ListP99Ms {
		fmt.Printf("%-22s p99 %7.1f ms\n", n, v)
	}
	if r.Failed > 0 {
		fmt.Printf("FAILED calls: %d\n", r.Failed)
	}
}

func (r *Result) save(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	return json.NewEncoder(f).Encode(r)
}

// timings collects per-call latencies from concurrent clients.
type timings struct {
	mu    sync.Mutex
	calls map[string][]float64
}

func (t *timings) add(call string, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.calls == nil {
		t.calls = map[string][]float64{}
	}
	t.calls[call] = append(t.calls[call], float64(d.Microseconds())/1000)
}

func (t *timings) summary() map[string][3]float64 {
	out := map[string][3]float64{}
	for n, v := range t.calls {
		slices.Sort(v)
		out[n] = [3]float64{pct(v, 50), pct(v, 90), pct(v, 99)}
	}
	return out
}

// pct is the nearest-rank percentile of sorted values.
func pct(sorted []float64, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}

func timed[T any](t *timings, name string, f func() (T, error)) (T, error) {
	start := time.Now()
	v, err := f()
	t.add(name, time.Since(start))
	return v, err
}

type pod struct {
	id, ctr string
	cfg     *cri.PodSandboxConfig
}

// start makes one pod ready the way the kubelet does: RunPodSandbox,
// CreateContainer, StartContainer.
func (b *bench) start(ctx context.Context, t *timings) (pod, time.Duration, error) {
	name := fmt.Sprintf("podbench-%s-%d", b.run, b.seq.Add(1))
	cfg := &cri.PodSandboxConfig{
		Metadata:     &cri.PodSandboxMetadata{Name: name, Namespace: "podbench", Uid: name, Attempt: 0},
		Hostname:     name,
		LogDirectory: filepath.Join(b.o.logDir, name),
		// The kubelet's default: a pid namespace per container (no
		// shareProcessNamespace), which is also what lets a runtime signal a
		// container's process directly instead of `runc kill --all`.
		Linux: &cri.LinuxPodSandboxConfig{SecurityContext: &cri.LinuxSandboxSecurityContext{
			NamespaceOptions: &cri.NamespaceOption{Pid: cri.NamespaceMode_CONTAINER},
		}},
	}
	began := time.Now()
	runResp, err := timed(t, "RunPodSandbox", func() (*cri.RunPodSandboxResponse, error) {
		return b.rs.RunPodSandbox(ctx, &cri.RunPodSandboxRequest{Config: cfg})
	})
	if err != nil {
		return pod{}, 0, fmt.Errorf("RunPodSandbox: %w", err)
	}
	p := pod{id: runResp.PodSandboxId, cfg: cfg}
	createResp, err := timed(t, "CreateContainer", func() (*cri.CreateContainerResponse, error) {
		return b.rs.CreateContainer(ctx, &cri.CreateContainerRequest{
			PodSandboxId: p.id,
			Config: &cri.ContainerConfig{
				Metadata: &cri.ContainerMetadata{Name: "sleep"},
				Image:    &cri.ImageSpec{Image: b.o.image},
				Command:  []string{"sleep", "3600"},
				LogPath:  "sleep.log",
				Linux: &cri.LinuxContainerConfig{SecurityContext: &cri.LinuxContainerSecurityContext{
					NamespaceOptions: &cri.NamespaceOption{Pid: cri.NamespaceMode_CONTAINER},
				}},
			},
			SandboxConfig: cfg,
		})
	})
	if err != nil {
		return p, 0, fmt.Errorf("CreateContainer: %w", err)
	}
	p.ctr = createResp.ContainerId
	if _, err := timed(t, "StartContainer", func() (*cri.StartContainerResponse, error) {
		return b.rs.StartContainer(ctx, &cri.StartContainerRequest{ContainerId: p.ctr})
	}); err != nil {
		return p, 0, fmt.Errorf("StartContainer: %w", err)
	}
	return p, time.Since(began), nil
}

// teardown removes a pod the way the kubelet does when a pod is deleted:
// StopContainer (no grace: sleep as PID 1 ignores SIGTERM, and a grace period
// would measure the timeout), StopPodSandbox, then the garbage collector's
// RemoveContainer and RemovePodSandbox.
func (b *bench) teardown(ctx context.Context, t *timings, p pod) error {
	if p.ctr != "" {
		if _, err := timed(t, "StopContainer", func() (*cri.StopContainerResponse, error) {
			return b.rs.StopContainer(ctx, &cri.StopContainerRequest{ContainerId: p.ctr, Timeout: 0})
		}); err != nil {
			return fmt.Errorf("StopContainer: %w", err)
		}
	}
	if _, err := timed(t, "StopPodSandbox", func() (*cri.StopPodSandboxResponse, error) {
		return b.rs.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: p.id})
	}); err != nil {
		return fmt.Errorf("StopPodSandbox: %w", err)
	}
	if p.ctr != "" {
		if _, err := timed(t, "RemoveContainer", func() (*cri.RemoveContainerResponse, error) {
			return b.rs.RemoveContainer(ctx, &cri.RemoveContainerRequest{ContainerId: p.ctr})
		}); err != nil {
			return fmt.Errorf("RemoveContainer: %w", err)
		}
	}
	if _, err := timed(t, "RemovePodSandbox", func() (*cri.RemovePodSandboxResponse, error) {
		return b.rs.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: p.id})
	}); err != nil {
		return fmt.Errorf("RemovePodSandbox: %w", err)
	}
	return nil
}

// parallel runs f for i in [0,n) on c workers and returns the wall time and
// the first error.
func parallel(c, n int, f func(i int) error) (time.Duration, error) {
	var next atomic.Int64
	var first error
	var mu sync.Mutex
	var wg sync.WaitGroup
	began := time.Now()
	for range c {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return time.Since(began), first
}

// lifecycle starts n pods with c clients, measures them running, then tears
// them all down with c clients.
func (b *bench) lifecycle(c, n int, measure bool) (*Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	r := &Result{Runtime: b.o.label, Mode: "lifecycle", Clients: c, Pods: n}
	var t timings
	pods := make([]pod, n)
	ready := make([]float64, n)
	used0 := usedMemKiB()
	cpu0 := cgroupCPU(b.o.cgroup)
	startWall, startErr := parallel(c, n, func(i int) error {
		p, d, err := b.start(ctx, &t)
		pods[i] = p
		ready[i] = float64(d.Microseconds()) / 1000
		return err
	})
	if startErr == nil && measure {
		if kib, procs := procmem.PerPod(b.o.procMatch); procs > 0 {
			r.PSSPerPodMiB = float64(kib) / 1024 / float64(n)
		}
		r.UsedPerPodMiB = float64(usedMemKiB()-used0) / 1024 / float64(n)
		r.DaemonRSSMiB = rssMiB(b.o.daemonPid)
	}
	var failed atomic.Int64
	tearWall, tearErr := parallel(c, n, func(i int) error {
		if pods[i].id == "" {
			return nil
		}
		err := b.teardown(ctx, &t, pods[i])
		if err != nil {
			failed.Add(1)
		}
		return err
	})
	cpu1 := cgroupCPU(b.o.cgroup)
	if startErr != nil {
		return nil, startErr
	}
	if tearErr != nil {
		return nil, tearErr
	}
	slices.Sort(ready)
	r.Calls = t.summary()
	r.PodReady = ready
	r.StartPerSec = float64(n) / startWall.Seconds()
	r.TeardownPerSec = float64(n) / tearWall.Seconds()
	if cpu0 >= 0 && cpu1 >= 0 {
		r.CPUPerPodMs = float64(cpu1-cpu0) / 1e6 / float64(n)
	}
	r.Failed = int(failed.Load())
	return r, nil
}

// density holds n pods running and measures what a kubelet node with n pods
// costs: memory per pod, daemon RSS, the List* calls the kubelet makes every
// second, and the runtime's idle CPU.
func (b *bench) density(n int) (*Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	r := &Result{Runtime: b.o.label, Mode: "density", Pods: n}
	var t timings
	pods := make([]pod, n)
	used0 := usedMemKiB()
	_, startErr := parallel(4, n, func(i int) error {
		p, _, err := b.start(ctx, &t)
		pods[i] = p
		return err
	})
	defer func() {
		if b.o.keep && startErr == nil {
			return
		}
		tctx, tcancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer tcancel()
		var tt timings
		parallel(4, n, func(i int) error {
			if pods[i].id == "" {
				return nil
			}
			return b.teardown(tctx, &tt, pods[i])
		})
	}()
	if startErr != nil {
		return nil, fmt.Errorf("starting %d pods: %w", n, startErr)
	}
	r.UsedPerPodMiB = float64(usedMemKiB()-used0) / 1024 / float64(n)
	if kib, procs := procmem.PerPod(b.o.procMatch); procs > 0 {
		r.PSSPerPodMiB = float64(kib) / 1024 / float64(n)
	}
	// The kubelet relists every second: 30 rounds of each call.
	var lt timings
	for range 30 {
		timed(&lt, "ListPodSandbox", func() (any, error) {
			return b.rs.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{})
		})
		timed(&lt, "ListContainers", func() (any, error) {
			return b.rs.ListContainers(ctx, &cri.ListContainersRequest{})
		})
		timed(&lt, "ListContainerStats", func() (any, error) {
			return b.rs.ListContainerStats(ctx, &cri.ListContainerStatsRequest{})
		})
		timed(&lt, "ListPodSandboxStats", func() (any, error) {
			return b.rs.ListPodSandboxStats(ctx, &cri.ListPodSandboxStatsRequest{})
		})
	}
	r.ListP99Ms = map[string]float64{}
	for name, p := range lt.summary() {
		r.ListP99Ms[name] = p[2]
	}
	r.DaemonRSSMiB = rssMiB(b.o.daemonPid)
	if b.o.cgroup != "" && b.o.idle > 0 {
		c0, w0 := cgroupCPU(b.o.cgroup), time.Now()
		time.Sleep(b.o.idle) // the measurement window itself, not synchronisation
		c1 := cgroupCPU(b.o.cgroup)
		if c0 >= 0 && c1 >= 0 {
			r.IdleCPUPercent = float64(c1-c0) / float64(time.Since(w0).Nanoseconds()) * 100
		}
	}
	return r, nil
}

// cgroupCPU is the CPU time (ns) used by everything in dir and below, or -1.
func cgroupCPU(dir string) int64 {
	if dir == "" {
		return -1
	}
	if data, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage")); err == nil {
		v, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		if err == nil {
			return v
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err == nil {
				return n * 1000
			}
		}
	}
	return -1
}

// usedMemKiB is MemTotal - MemAvailable: what the node has given away.
func usedMemKiB() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var total, avail int64
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			total = v
		case "MemAvailable:":
			avail = v
		}
	}
	return total - avail
}

func rssMiB(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return float64(kib) / 1024
		}
	}
	return 0
}
