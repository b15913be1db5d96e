package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/pod-shim/pod-shim/pkg/image"
	"github.com/pod-shim/pod-shim/pkg/lockmap"
	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/runc"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
	"github.com/pod-shim/pod-shim/pkg/store"
)

// Fakes for the manager's collaborators. They keep what a real monitor
// keeps on disk where the manager reads it directly: the exit files in the
// pod's dir.

type fakeSandboxes struct {
	mu      sync.Mutex
	pods    map[string]*sandbox.Sandbox
	locks   lockmap.Map
	mon     *fakeMonitor
	rt      *fakeRuntime
	noMon   bool // the pod's monitor is gone
	forced  []string
	resized []*sandbox.Resources
}

func (f *fakeSandboxes) Get(id string) (*sandbox.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.pods[id]
	if !ok {
		return nil, fmt.Errorf("%q: %w", id, sandbox.ErrNotFound)
	}
	c := *sb
	return &c, nil
}

func (f *fakeSandboxes) Lock(id string) func() { return f.locks.Lock(id) }

func (f *fakeSandboxes) Monitor(ctx context.Context, sb *sandbox.Sandbox) (Monitor, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.noMon {
		return nil, errors.New("monitor is gone")
	}
	return f.mon, nil
}

func (f *fakeSandboxes) Runtime(sb *sandbox.Sandbox) (Runtime, error) { return f.rt, nil }

func (f *fakeSandboxes) ForceDeleteIn(ctx context.Context, sb *sandbox.Sandbox, id string) error {
	return f.ForceDelete(ctx, id)
}

func (f *fakeSandboxes) UpdateResources(ctx context.Context, id string, r *sandbox.Resources) error {
	f.mu.Lock()
	f.resized = append(f.resized, r)
	f.mu.Unlock()
	return nil
}

func (f *fakeSandboxes) ForceDelete(ctx context.Context, id string) error {
	f.mu.Lock()
	f.forced = append(f.forced, id)
	f.mu.Unlock()
	return nil
}

// fakeMonitor runs "containers" that live until killed; a kill writes the
// exit file as the real monitor does.
type fakeMonitor struct {
	dir string // the pod's dir

	mu        sync.Mutex
	running   map[string]bool
	createErr error
	deletes   map[string]int
	kills     []syscall.Signal
	// ignoreTERM: the process survives its stop signal.
	ignoreTERM bool
}

func (f *fakeMonitor) Create(ctx context.Context, req monitor.CreateRequest) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.createErr != nil {
		return 0, f.createErr
	}
	f.running[req.ID] = true
	return 4242, nil
}

func (f *fakeMonitor) exit(id string, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exitLocked(id, code)
}

func (f *fakeMonitor) exitLocked(id string, code int) {
	delete(f.running, id)
	data, _ := json.Marshal(monitor.Exit{Pid: 4242, ExitCode: code, ExitedAt: time.Now()})
	_ = os.MkdirAll(filepath.Join(f.dir, "exits"), 0o755)
	_ = os.WriteFile(filepath.Join(f.dir, "exits", id+".json"), data, 0o644)
}

func (f *fakeMonitor) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kills = append(f.kills, sig)
	if f.running[id] && (sig == syscall.SIGKILL || !f.ignoreTERM) {
		f.exitLocked(id, 128+int(sig))
	}
	return nil
}

func (f *fakeMonitor) Wait(ctx context.Context, id string) (*monitor.Exit, error) {
	for {
		if ex, err := monitor.ReadExit(f.dir, id); err == nil {
			return ex, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

func (f *fakeMonitor) Delete(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.running, id)
	f.deletes[id]++
	return nil
}

func (f *fakeMonitor) Exec(ctx context.Context, req monitor.ExecRequest) (*monitor.ExecResult, error) {
	return &monitor.ExecResult{Stdout: []byte(req.Process.Args[0]), ExitCode: 0}, nil
}

func (f *fakeMonitor) ReopenLog(ctx context.Context, id string) error { return nil }

func (f *fakeMonitor) deleteCount(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deletes[id]
}

type fakeImages struct {
	mu      sync.Mutex
	removed map[string]int
	// prepare, when set, runs inside PrepareRootfs (to hold a Create there).
	prepare func(containerID string)
}

var testImage = &image.Image{
	ID:     "sha256:" + fmt.Sprintf("%064x", 1),
	Config: ocispec.ImageConfig{Cmd: []string{"/bin/sh"}},
}

func (f *fakeImages) Get(ref string) (*image.Image, error) {
	if ref != "busybox" && ref != testImage.ID {
		return nil, fmt.Errorf("%q: %w", ref, image.ErrNotFound)
	}
	return testImage, nil
}

func (f *fakeImages) PrepareRootfs(ctx context.Context, imageID, containerID, target string, readOnly bool) (string, error) {
	if f.prepare != nil {
		f.prepare(containerID)
	}
	return target, nil
}

func (f *fakeImages) RemoveRootfs(containerID, target string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed[containerID]++
	return nil
}

// fakeRuntime answers runc state from a table.
type fakeRuntime struct {
	mu     sync.Mutex
	states map[string]*runc.State
}

func (f *fakeRuntime) State(ctx context.Context, id string) (*runc.State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st, ok := f.states[id]; ok {
		return st, nil
	}
	return nil, fmt.Errorf("runc state %s: %w", id, runc.ErrNotFound)
}

func (f *fakeRuntime) Update(ctx context.Context, id string, r *specs.LinuxResources) error {
	return nil
}

func (f *fakeRuntime) Delete(ctx context.Context, id string, force bool) error { return nil }

// fakeHooks counts calls; block, when set, holds a StopContainer call.
type fakeHooks struct {
	mu     sync.Mutex
	calls  map[string]int
	onStop func(c *Container)
}

func (h *fakeHooks) count(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[name]
}

func (h *fakeHooks) inc(name string) {
	h.mu.Lock()
	h.calls[name]++
	h.mu.Unlock()
}

func (h *fakeHooks) BeginCreate() func() { h.inc("BeginCreate"); return func() {} }
func (h *fakeHooks) CreateContainer(ctx context.Context, c *Container, spec *specs.Spec) error {
	h.inc("CreateContainer")
	return nil
}
func (h *fakeHooks) PostCreateContainer(ctx context.Context, c *Container) {
	h.inc("PostCreateContainer")
}
func (h *fakeHooks) StartContainer(ctx context.Context, c *Container) error {
	h.inc("StartContainer")
	return nil
}
func (h *fakeHooks) PostStartContainer(ctx context.Context, c *Container) {
	h.inc("PostStartContainer")
}
func (h *fakeHooks) UpdateContainer(ctx context.Context, c *Container, r *Resources) (*Resources, error) {
	h.inc("UpdateContainer")
	return r, nil
}
func (h *fakeHooks) PostUpdateContainer(ctx context.Context, c *Container) {
	h.inc("PostUpdateContainer")
}
func (h *fakeHooks) StopContainer(ctx context.Context, c *Container) {
	h.inc("StopContainer")
	h.mu.Lock()
	on := h.onStop
	h.mu.Unlock()
	if on != nil {
		on(c)
	}
}
func (h *fakeHooks) RemoveContainer(ctx context.Context, c *Container) { h.inc("RemoveContainer") }

// env is a manager over fakes, with one ready pod.
type env struct {
	t     *testing.T
	m     *Manager
	db    *store.DB
	sbs   *fakeSandboxes
	mon   *fakeMonitor
	imgs  *fakeImages
	rt    *fakeRuntime
	hooks *fakeHooks
	pod   *sandbox.Sandbox
	state string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "meta.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	pod := &sandbox.Sandbox{
		ID:    store.NewID(),
		State: sandbox.StateReady,
		Dir:   filepath.Join(dir, "pod"),
		Config: sandbox.Config{
			Name: "pod", Namespace: "ns", UID: "uid",
			LogDirectory: filepath.Join(dir, "logs"),
		},
	}
	if err := os.MkdirAll(pod.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := &env{
		t: t, db: db, pod: pod, state: filepath.Join(dir, "state"),
		mon:   &fakeMonitor{dir: pod.Dir, running: map[string]bool{}, deletes: map[string]int{}},
		imgs:  &fakeImages{removed: map[string]int{}},
		rt:    &fakeRuntime{states: map[string]*runc.State{}},
		hooks: &fakeHooks{calls: map[string]int{}},
	}
	e.sbs = &fakeSandboxes{pods: map[string]*sandbox.Sandbox{pod.ID: pod}, mon: e.mon, rt: e.rt}
	e.m = e.open()
	return e
}

// open makes a manager over the env's store and fakes, as a (re)started
// daemon does.
func (e *env) open() *Manager {
	e.t.Helper()
	m, err := newManager(Options{
		StateDir: e.state, CgroupDriver: "cgroupfs", Hooks: e.hooks,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, deps{db: e.db, sandboxes: e.sbs, images: e.imgs})
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

func (e *env) create(name string) *Container {
	e.t.Helper()
	c, err := e.m.Create(context.Background(), e.pod.ID, Config{Name: name, Image: "busybox", Command: []string{"/bin/sh"}})
	if err != nil {
		e.t.Fatalf("Create %s: %v", name, err)
	}
	return c
}

func (e *env) running(name string) *Container {
	e.t.Helper()
	c := e.create(name)
	if err := e.m.Start(context.Background(), c.ID); err != nil {
		e.t.Fatalf("Start %s: %v", name, err)
	}
	return c
}

// stored is the record as the store holds it, nil when there is none.
func (e *env) stored(id string) *Container {
	e.t.Helper()
	var c Container
	if err := e.db.Get(bucket, id, &c); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		e.t.Fatal(err)
	}
	return &c
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
