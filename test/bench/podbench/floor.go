package main

// Floor mode: what one pod's start and stop cost on this machine when done
// by the host tools alone, with no runtime daemon in between. Each step is
// done the way a runtime must do it, in-process where a runtime would be:
// the netns and the overlay are syscalls, CNI goes through libcni (which
// execs the plugins), and the two containers are runc create + runc start
// through go-runc. Whatever a runtime adds on top of these figures (gRPC,
// its store, monitors, bookkeeping) is its own cost.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/go-runc"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/pod-shim/pod-shim/pkg/oci"
)

// The start steps, in the order they run, then the teardown steps. Kill
// steps include waiting for the process to be gone. With -runc-run, one
// `runc run -d` (pause-run, app-run) replaces each create + start.
var (
	floorStartSteps = []string{"netns", "cni-add", "pause-create", "pause-start", "pause-run", "overlay", "app-create", "app-start", "app-run"}
	floorStopSteps  = []string{"app-kill", "app-delete", "pause-kill", "pause-delete", "cni-del", "umount", "netns-remove"}
)

// stepTimeout bounds every host call, as a runtime bounds them.
const stepTimeout = 60 * time.Second

// floorSerial is the time of the start steps run one after another.
func floorSerial(steps map[string]time.Duration) time.Duration {
	var sum time.Duration
	for _, s := range floorStartSteps {
		sum += steps[s]
	}
	return sum
}

// floorOverlap is the best a runtime can do that runs CNI ADD beside the
// pause container's create and start (the pause needs only the netns path,
// not the IP): the longer of the two, plus what must follow both.
func floorOverlap(steps map[string]time.Duration) time.Duration {
	pause := steps["pause-create"] + steps["pause-start"] + steps["pause-run"]
	app := steps["app-create"] + steps["app-start"] + steps["app-run"]
	return steps["netns"] + max(steps["cni-add"], pause) + steps["overlay"] + app
}

// floorEnv holds what every pod of a floor run shares.
type floorEnv struct {
	dir      string // private run dir, removed at the end
	run      string // unique token in every name this run makes
	rc       *runc.Runc
	cni      *libcni.CNIConfig
	net      *libcni.NetworkConfigList
	pauseFS  string // read-only rootfs holding only the pause binary
	lower    string // busybox rootfs, the app's overlay lower dir
	stderr   *os.File
	seq      int
	cgParent string
	runcRun  bool // runc run -d instead of runc create + runc start
}

// floorPod records what has been made for one pod, so that teardown undoes
// exactly that, also after a failure halfway through the start.
type floorPod struct {
	name, dir, netns string
	rt               *libcni.RuntimeConf
	cniAdded         bool
	pause, app       string // runc ids once created
	pausePid, appPid int
	rootfs           string // mounted overlay
}

func runFloor(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.runc == "" || o.pause == "" || o.cniConfDir == "" {
		return errors.New("floor: -runc, -pause and -cni-conf-dir are required")
	}
	// Containers' init processes are orphaned when runc create exits; as a
	// pod monitor does, become their subreaper so they can be waited for.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("subreaper: %w", err)
	}
	env, err := newFloorEnv(o)
	if err != nil {
		return err
	}
	defer env.close()

	// One untimed pod first, as in lifecycle mode.
	if _, _, err := env.pod(ctx, false, nil); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	label := o.label
	if label == "runtime" { // the flag's default
		label = "floor"
	}
	r := &Result{Runtime: label, Mode: "floor", Clients: 1, Pods: o.pods}
	var t timings
	var serial, overlap []float64
	cpu0 := cgroupCPU(o.cgroup)
	for range o.pods {
		steps, _, err := env.pod(ctx, false, &t)
		if err != nil {
			return err
		}
		serial = append(serial, ms(floorSerial(steps)))
		overlap = append(overlap, ms(floorOverlap(steps)))
	}
	cpu1 := cgroupCPU(o.cgroup)
	if cpu0 >= 0 && cpu1 >= 0 {
		r.CPUPerPodMs = float64(cpu1-cpu0) / 1e6 / float64(o.pods)
	}
	if o.measureOverlap {
		// A second pass that really runs CNI ADD beside the pause start: on a
		// loaded machine the two compete for the CPU, which the per-pod
		// arithmetic above cannot see.
		var measured []float64
		for range o.pods {
			_, d, err := env.pod(ctx, true, nil)
			if err != nil {
				return err
			}
			measured = append(measured, ms(d))
		}
		slices.Sort(measured)
		r.FloorOverlapMeasuredMs = pct(measured, 50)
	}
	slices.Sort(serial)
	slices.Sort(overlap)
	r.Calls = t.summary()
	r.FloorSerialMs = pct(serial, 50)
	r.FloorOverlapMs = pct(overlap, 50)
	r.print()
	return r.save(o.jsonOut)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func newFloorEnv(o options) (_ *floorEnv, err error) {
	base := o.runDir
	if base == "" {
		base = "/run"
	}
	dir, err := os.MkdirTemp(base, "pf.")
	if err != nil {
		return nil, err
	}
	run := strings.TrimPrefix(filepath.Base(dir), "pf.")
	env := &floorEnv{dir: dir, run: run, cgParent: "/podbench-floor", runcRun: o.runcRun}
	defer func() {
		if err != nil {
			env.close()
		}
	}()
	if env.stderr, err = os.Create(filepath.Join(dir, "runc.log")); err != nil {
		return nil, err
	}
	env.rc = &runc.Runc{Command: o.runc, Root: filepath.Join(dir, "runc")}

	files, err := libcni.ConfFiles(o.cniConfDir, []string{".conflist"})
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no .conflist in %s: %v", o.cniConfDir, err)
	}
	slices.Sort(files)
	if env.net, err = libcni.NetworkConfFromFile(files[0]); err != nil {
		return nil, err
	}
	// An explicit exec: with nil, libcni fills one in lazily on each call,
	// a data race when ADD runs beside other work in the overlap pass.
	env.cni = libcni.NewCNIConfigWithCacheDir(strings.Split(o.cniBinDir, ":"), filepath.Join(dir, "cni"),
		&invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: env.stderr}, PluginDecoder: version.PluginDecoder{}})

	// pause runs from a read-only rootfs that needs no mount, as pod-shim's
	// built-in pause does.
	env.pauseFS = filepath.Join(dir, "pause")
	if err := mkRootfs(env.pauseFS, o.pause, "pause", nil); err != nil {
		return nil, err
	}
	env.lower = filepath.Join(dir, "busybox")
	if err := mkRootfs(env.lower, o.busybox, "bin/busybox", []string{"bin/sleep", "bin/sh"}); err != nil {
		return nil, err
	}
	return env, nil
}

// mkRootfs makes a minimal rootfs at root holding a copy of bin at rel,
// links to it, and the mount points runc needs.
func mkRootfs(root, bin, rel string, links []string) error {
	for _, d := range []string{"proc", "dev", "sys", "etc", "tmp", "bin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, rel), data, 0o755); err != nil {
		return err
	}
	for _, l := range links {
		if err := os.Symlink(filepath.Base(rel), filepath.Join(root, l)); err != nil {
			return err
		}
	}
	return nil
}

// close removes the run dir, after unmounting whatever a failed pod left
// under it: RemoveAll must never walk into a mount.
func (e *floorEnv) close() {
	if e.stderr != nil {
		e.stderr.Close()
	}
	mounts, _ := mountsUnder(e.dir)
	for _, m := range mounts {
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
	if left, _ := mountsUnder(e.dir); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "podbench: mounts remain under %s; not removing it\n", e.dir)
		return
	}
	for _, h := range oci.CgroupHierarchies(oci.CgroupRoot) {
		_ = unix.Rmdir(filepath.Join(h, e.cgParent))
	}
	os.RemoveAll(e.dir)
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out, nil
}

// pod starts one pod and tears it down, and returns each step's time and
// the start's wall time; with t it also adds the steps to the run's
// figures. With overlap it runs CNI ADD beside the pause start.
func (e *floorEnv) pod(ctx context.Context, overlap bool, t *timings) (steps map[string]time.Duration, wall time.Duration, err error) {
	e.seq++
	p := &floorPod{name: fmt.Sprintf("pf%s-%d", e.run, e.seq)}
	p.dir = filepath.Join(e.dir, "pods", p.name)
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return nil, 0, err
	}
	got := map[string]time.Duration{} // also filled by the deferred teardown, whatever is returned
	var mu sync.Mutex                 // CNI ADD's goroutine times its step too
	step := func(name string, f func() error) error {
		start := time.Now()
		err := f()
		d := time.Since(start)
		mu.Lock()
		got[name] = d
		mu.Unlock()
		if t != nil {
			t.add(name, d)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", p.name, name, err)
		}
		return nil
	}
	defer func() {
		// Teardown runs whatever happened: a cancelled run still cleans up.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*stepTimeout)
		defer cancel()
		if terr := e.teardown(tctx, p, step); err == nil {
			err = terr
		}
	}()
	began := time.Now()
	if err := step("netns", func() (err error) { p.netns, err = newNetNS(filepath.Join(e.dir, "netns"), p.name); return }); err != nil {
		return nil, 0, err
	}
	p.rt = &libcni.RuntimeConf{
		ContainerID: p.name, NetNS: p.netns, IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "podbench"}, {"K8S_POD_NAME", p.name},
			{"K8S_POD_INFRA_CONTAINER_ID", p.name}, {"K8S_POD_UID", p.name}},
	}
	cniAdd := func() error {
		cctx, cancel := context.WithTimeout(ctx, stepTimeout)
		defer cancel()
		// Marked before the call: a failed ADD still needs its DEL.
		p.cniAdded = true
		_, err := e.cni.AddNetworkList(cctx, e.net, p.rt)
		return err
	}
	pauseStart := func() error {
		if e.runcRun {
			return step("pause-run", func() error { return e.create(ctx, p, true) })
		}
		if err := step("pause-create", func() error { return e.create(ctx, p, true) }); err != nil {
			return err
		}
		return step("pause-start", func() error { return e.start(ctx, p.pause) })
	}
	if overlap {
		errc := make(chan error, 1)
		go func() { errc <- step("cni-add", cniAdd) }()
		perr := pauseStart()
		if cerr := <-errc; cerr != nil {
			return nil, 0, cerr
		}
		if perr != nil {
			return nil, 0, perr
		}
	} else {
		if err := step("cni-add", cniAdd); err != nil {
			return nil, 0, err
		}
		if err := pauseStart(); err != nil {
			return nil, 0, err
		}
	}
	if err := step("overlay", func() error { return e.mountOverlay(p) }); err != nil {
		return nil, 0, err
	}
	if e.runcRun {
		if err := step("app-run", func() error { return e.create(ctx, p, false) }); err != nil {
			return nil, 0, err
		}
	} else {
		if err := step("app-create", func() error { return e.create(ctx, p, false) }); err != nil {
			return nil, 0, err
		}
		if err := step("app-start", func() error { return e.start(ctx, p.app) }); err != nil {
			return nil, 0, err
		}
	}
	return got, time.Since(began), nil
}

// teardown undoes what p records, in a runtime's order, and goes on past a
// failed step so that everything it can undo is undone.
func (e *floorEnv) teardown(ctx context.Context, p *floorPod, step func(string, func() error) error) error {
	var errs []error
	do := func(name string, f func() error) { errs = append(errs, step(name, f)) }
	if p.app != "" {
		do("app-kill", func() error { return e.kill(ctx, p.app, p.appPid) })
		do("app-delete", func() error { return e.delete(ctx, &p.app) })
	}
	if p.pause != "" {
		do("pause-kill", func() error { return e.kill(ctx, p.pause, p.pausePid) })
		do("pause-delete", func() error { return e.delete(ctx, &p.pause) })
	}
	if p.cniAdded {
		do("cni-del", func() error {
			cctx, cancel := context.WithTimeout(ctx, stepTimeout)
			defer cancel()
			return e.cni.DelNetworkList(cctx, e.net, p.rt)
		})
	}
	if p.rootfs != "" {
		do("umount", func() error { return unix.Unmount(p.rootfs, unix.MNT_DETACH) })
	}
	if p.netns != "" {
		do("netns-remove", func() error { return removeNetNS(p.netns) })
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.RemoveAll(p.dir)
}

// newNetNS creates a network namespace and pins it at dir/name by a bind
// mount, with no process: a locked OS thread unshares its netns, brings
// up lo (so no loopback plugin needs spawning), pins it, and goes back to
// the namespace it came from.
func newNetNS(dir, name string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return "", err
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		err = loUp()
		if err == nil {
			err = unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), path, "none", unix.MS_BIND, "")
		}
		if serr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); serr != nil {
			// Left locked: the goroutine's end then ends this thread, which
			// must never run other goroutines in the pod's namespace.
			errc <- errors.Join(err, fmt.Errorf("restore netns: %w", serr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		_ = unix.Unmount(path, unix.MNT_DETACH)
		_ = os.Remove(path)
		return "", err
	}
	return path, nil
}

// loUp sets IFF_UP on lo of the calling thread's network namespace.
func loUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

func removeNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return os.Remove(path)
}

// mountOverlay mounts the app's rootfs: the shared busybox dir as the one
// lower layer, with the pod's own upper and work dirs.
func (e *floorEnv) mountOverlay(p *floorPod) error {
	upper, work, root := filepath.Join(p.dir, "upper"), filepath.Join(p.dir, "work"), filepath.Join(p.dir, "rootfs")
	for _, d := range []string{upper, work, root} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	data := "lowerdir=" + e.lower + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", root, "overlay", 0, data); err != nil {
		return err
	}
	p.rootfs = root
	return nil
}

// create writes the bundle and runs runc create (with -runc-run, runc run
// -d) for the pause (pause=true) or the app container. The bundle write is
// counted in: a runtime must write it too.
func (e *floorEnv) create(ctx context.Context, p *floorPod, pause bool) error {
	id, bundle := p.name+"-app", filepath.Join(p.dir, "app")
	spec := e.appSpec(p)
	if pause {
		id, bundle = p.name+"-pause", filepath.Join(p.dir, "pause")
		spec = e.pauseSpec(p)
	}
	spec.Linux.CgroupsPath = filepath.Join(e.cgParent, id)
	err := oci.WriteBundle(bundle, spec)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	pidFile := filepath.Join(bundle, "pid")
	// Recorded before the call: a create that fails halfway may leave a
	// container for delete to remove.
	if pause {
		p.pause = id
	} else {
		p.app = id
	}
	opts := &runc.CreateOpts{IO: &nullStdio{stderr: e.stderr}, PidFile: pidFile}
	if e.runcRun {
		opts.Detach = true
		_, err = e.rc.Run(cctx, id, bundle, opts)
	} else {
		err = e.rc.Create(cctx, id, bundle, opts)
	}
	if err != nil {
		return fmt.Errorf("%w: %s", err, logTail(e.stderr.Name()))
	}
	pid, err := runc.ReadPidFile(pidFile)
	if err != nil {
		return err
	}
	if pause {
		p.pausePid = pid
	} else {
		p.appPid = pid
	}
	return nil
}

// logTail is the last line runc wrote to the run's log, its error message;
// the log itself goes with the run dir.
func logTail(path string) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return lines[len(lines)-1]
}

func (e *floorEnv) start(ctx context.Context, id string) error {
	cctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	return e.rc.Start(cctx, id)
}

// kill sends SIGKILL and waits until the process is gone: it is our child
// (we are its subreaper), so waiting also reaps it.
func (e *floorEnv) kill(ctx context.Context, id string, pid int) error {
	cctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if err := e.rc.Kill(cctx, id, int(unix.SIGKILL), nil); err != nil {
		return err
	}
	if pid <= 0 {
		return nil
	}
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err == unix.ECHILD {
			return nil // not ours after all (runc create failed before reparenting)
		}
		return err
	}
}

// delete removes the container and clears *id once it is gone.
func (e *floorEnv) delete(ctx context.Context, id *string) error {
	cctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if err := e.rc.Delete(cctx, *id, &runc.DeleteOpts{Force: true}); err != nil {
		return err
	}
	*id = ""
	return nil
}

// pauseSpec is what pod-shim gives its built-in pause: no privileges, a
// read-only root needing no mount, only /proc, /dev and /sys, and the
// pod's pinned netns; new pid, ipc, uts and mount namespaces.
func (e *floorEnv) pauseSpec(p *floorPod) *specs.Spec {
	s := oci.DefaultSpec(p.name)
	s.Root = &specs.Root{Path: e.pauseFS, Readonly: true}
	s.Process.Args = []string{"/pause"}
	s.Process.Capabilities = &specs.LinuxCapabilities{}
	s.Process.NoNewPrivileges = true
	s.Process.User = specs.User{UID: 65535, GID: 65535}
	s.Hostname = p.name
	s.Mounts = []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
	}
	oci.SetNamespace(s, specs.NetworkNamespace, p.netns)
	return s
}

// appSpec runs `sleep 3600` on the overlay rootfs, in the pause's network,
// ipc and uts namespaces and a pid namespace of its own (the kubelet's
// default).
func (e *floorEnv) appSpec(p *floorPod) *specs.Spec {
	s := oci.DefaultSpec(p.name)
	s.Root = &specs.Root{Path: p.rootfs}
	s.Process.Args = []string{"sleep", "3600"}
	oci.SetNamespace(s, specs.NetworkNamespace, p.netns)
	oci.SetNamespace(s, specs.IPCNamespace, fmt.Sprintf("/proc/%d/ns/ipc", p.pausePid))
	oci.SetNamespace(s, specs.UTSNamespace, fmt.Sprintf("/proc/%d/ns/uts", p.pausePid))
	return s
}

// nullStdio gives a container /dev/null for stdin and stdout and the run's
// log for stderr (where runc also writes its errors). Files, not pipes:
// with a pipe, go-runc would wait for EOF, which the container holds open.
type nullStdio struct{ stderr *os.File }

func (n *nullStdio) Close() error { return nil }

func (n *nullStdio) Stdin() io.WriteCloser { return nil }
func (n *nullStdio) Stdout() io.ReadCloser { return nil }
func (n *nullStdio) Stderr() io.ReadCloser { return nil }
func (n *nullStdio) Set(cmd *exec.Cmd) {
	cmd.Stdin = nil
	cmd.Stdout = nil
	cmd.Stderr = n.stderr
}
