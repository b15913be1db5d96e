package sandbox

import (
	"context"
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

	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/network"
	"github.com/pod-shim/pod-shim/pkg/store"
)

// fakeNetwork stands in for CNI and pinned netns: it hands out one IP per
// pod and counts what it was asked, so tests can tell a leaked or doubly
// released address from a correct teardown.
type fakeNetwork struct {
	mu        sync.Mutex
	setups    map[string]int
	teardowns map[string][]*network.Result // prev results by pod id
	netns     map[string]bool              // pinned paths
	setupErr  error
	// inSetup, when set, receives each pod id as its Setup begins, and
	// release then holds the Setup until the test closes it.
	inSetup chan string
	release chan struct{}
}

func newFakeNetwork() *fakeNetwork {
	return &fakeNetwork{setups: map[string]int{}, teardowns: map[string][]*network.Result{}, netns: map[string]bool{}}
}

func (n *fakeNetwork) Setup(ctx context.Context, pod network.Pod) (*network.Result, error) {
	if n.inSetup != nil {
		n.inSetup <- pod.ID
		select {
		case <-n.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.setupErr != nil {
		return nil, n.setupErr
	}
	n.setups[pod.ID]++
	return &network.Result{IPs: []string{"10.88.0.7"}, Interface: "eth0", Network: "fake"}, nil
}

func (n *fakeNetwork) Teardown(ctx context.Context, pod network.Pod, prev *network.Result) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.teardowns[pod.ID] = append(n.teardowns[pod.ID], prev)
	return nil
}

func (n *fakeNetwork) CreateNetNS(dir, name string) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	path := filepath.Join(dir, name)
	if n.netns[path] {
		return "", fmt.Errorf("netns %s exists", path)
	}
	n.netns[path] = true
	return path, nil
}

func (n *fakeNetwork) RemoveNetNS(path string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.netns, path)
	return nil
}

func (n *fakeNetwork) teardownsOf(id string) []*network.Result {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*network.Result(nil), n.teardowns[id]...)
}

func (n *fakeNetwork) pinned() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.netns)
}

// fakeMonitors stand in for monitor processes: one fakeMonitor per pod
// dir, reachable by Connect until it is shut down.
type fakeMonitors struct {
	mu       sync.Mutex
	byDir    map[string]*fakeMonitor
	startErr error
}

func newFakeMonitors() *fakeMonitors { return &fakeMonitors{byDir: map[string]*fakeMonitor{}} }

func (f *fakeMonitors) Start(ctx context.Context, o monitor.StartOptions) (PodMonitor, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.startErr != nil {
		return nil, f.startErr
	}
	m := &fakeMonitor{dir: o.Dir, runtime: o.Runtime, root: o.RuntimeRoot, running: map[string]bool{}}
	f.byDir[o.Dir] = m
	return m, nil
}

func (f *fakeMonitors) Connect(ctx context.Context, dir string) (PodMonitor, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.byDir[dir]
	if m == nil || m.isShutDown() {
		return nil, fmt.Errorf("connect to monitor in %s: %w", dir, os.ErrNotExist)
	}
	return m, nil
}

func (f *fakeMonitors) of(dir string) *fakeMonitor {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byDir[dir]
}

// fakeMonitor runs "containers" as entries of a map.
type fakeMonitor struct {
	dir, runtime, root string

	mu       sync.Mutex
	running  map[string]bool
	kills    int
	deletes  int
	shutDown bool
}

func (m *fakeMonitor) Pid() int { return 0 }

func (m *fakeMonitor) Create(ctx context.Context, req monitor.CreateRequest) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.shutDown {
		return 0, errors.New("monitor is shut down")
	}
	m.running[req.ID] = true
	return 4242, nil
}

func (m *fakeMonitor) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.kills++
	m.running[id] = false
	return nil
}

func (m *fakeMonitor) Wait(ctx context.Context, id string) (*monitor.Exit, error) {
	return &monitor.Exit{ExitCode: 137, ExitedAt: time.Now()}, nil
}

func (m *fakeMonitor) Delete(ctx context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deletes++
	delete(m.running, id)
	return nil
}

func (m *fakeMonitor) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.shutDown = true
	return nil
}

func (m *fakeMonitor) Close() error { return nil }

func (m *fakeMonitor) isShutDown() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.shutDown
}

func (m *fakeMonitor) counts() (kills, deletes int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.kills, m.deletes
}

// testEnv is a Manager on fakes, a temp store and a temp state dir: no
// root, no runc, no CNI.
type testEnv struct {
	m        *Manager
	db       *store.DB
	net      *fakeNetwork
	monitors *fakeMonitors
}

func newTestEnv(t *testing.T, mod func(*Options)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "meta.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	pause := filepath.Join(dir, "pause-binary")
	if err := os.WriteFile(pause, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := &testEnv{db: db, net: newFakeNetwork(), monitors: newFakeMonitors()}
	opts := Options{
		DB:           db,
		Network:      env.net,
		Monitors:     env.monitors,
		StateDir:     filepath.Join(dir, "state"),
		PauseBinary:  pause,
		Runtime:      "/usr/bin/false",
		RuntimeRoot:  filepath.Join(dir, "runc"),
		CgroupDriver: "cgroupfs",
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mod != nil {
		mod(&opts)
	}
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	env.m = m
	return env
}

// podConfig is a pod the fakes can run without root: the host's IPC
// namespace, so Run mounts no /dev/shm.
func podConfig(name string) Config {
	return Config{
		Name: name, Namespace: "default", UID: "uid-" + name, Hostname: name,
		Namespaces: Namespaces{IPC: ModeNode},
	}
}

func (e *testEnv) run(t *testing.T, name string) *Sandbox {
	t.Helper()
	sb, err := e.m.Run(context.Background(), podConfig(name))
	if err != nil {
		t.Fatalf("Run %s: %v", name, err)
	}
	return sb
}

// stored returns the record of id, or nil when there is none.
func (e *testEnv) stored(t *testing.T, id string) *Sandbox {
	t.Helper()
	var sb Sandbox
	err := e.db.Get(bucket, id, &sb)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return &sb
}
