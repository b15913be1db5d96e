package nri

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/pod-shim/pod-shim/pkg/container"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// fakeSandboxes holds one ready pod.
type fakeSandboxes struct{ pod *sandbox.Sandbox }

func (f *fakeSandboxes) Get(id string) (*sandbox.Sandbox, error) {
	if id != f.pod.ID {
		return nil, sandbox.ErrNotFound
	}
	return f.pod, nil
}

func (f *fakeSandboxes) List(sandbox.Filter) ([]*sandbox.Sandbox, error) {
	return []*sandbox.Sandbox{f.pod}, nil
}

// fakeContainers keeps records as container.Manager does: a container
// being created is not listed until its Create has run the hooks.
type fakeContainers struct {
	mu   sync.Mutex
	recs map[string]*container.Container
}

func (f *fakeContainers) Get(id string) (*container.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.recs[id]; ok && c.State != container.StateCreating {
		return c, nil
	}
	return nil, container.ErrNotFound
}

func (f *fakeContainers) List(container.Filter) ([]*container.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*container.Container
	for _, c := range f.recs {
		if c.State != container.StateCreating {
			out = append(out, c)
		}
	}
	return out, nil
}

func (f *fakeContainers) UpdateResources(context.Context, string, *container.Resources) error {
	return nil
}

func (f *fakeContainers) Stop(context.Context, string, time.Duration) error { return nil }

// create runs the hooks in container.Manager.Create's order: BeginCreate
// before the record exists, CreateContainer, the record marked created,
// PostCreateContainer, then the end of the block. hold, when not nil, keeps
// the Create in flight (after BeginCreate) until it is closed.
func (f *fakeContainers) create(t *testing.T, n *NRI, podID, id string, hold <-chan struct{}) {
	end := n.BeginCreate()
	defer end()
	c := &container.Container{ID: id, SandboxID: podID, State: container.StateCreating, Config: container.Config{Name: id}}
	f.mu.Lock()
	f.recs[id] = c
	f.mu.Unlock()
	if hold != nil {
		<-hold
	}
	spec := &specs.Spec{Process: &specs.Process{Args: []string{"/bin/sh"}}, Linux: &specs.Linux{}}
	if err := n.CreateContainer(context.Background(), c, spec); err != nil {
		t.Errorf("CreateContainer %s: %v", id, err)
	}
	f.mu.Lock()
	c.State = container.StateCreated
	f.mu.Unlock()
	n.PostCreateContainer(context.Background(), c)
}

// syncPlugin counts how each container reached it; its first Synchronize
// blocks until released.
type syncPlugin struct {
	reached, release chan struct{}
	once             sync.Once

	mu      sync.Mutex
	synced  map[string]int
	created map[string]int
}

func (p *syncPlugin) Synchronize(ctx context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	p.mu.Lock()
	for _, c := range ctrs {
		p.synced[c.Id]++
	}
	p.mu.Unlock()
	first := false
	p.once.Do(func() { first = true })
	if first {
		close(p.reached)
		<-p.release
	}
	return nil, nil
}

func (p *syncPlugin) CreateContainer(ctx context.Context, pod *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.mu.Lock()
	p.created[c.Id]++
	p.mu.Unlock()
	return nil, nil, nil
}

func (p *syncPlugin) seen(id string) (synced, created int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.synced[id], p.created[id]
}

// TestLateJoiningPluginSeesEveryContainerOnce: containers created before,
// while and after a plugin synchronizes, and one whose Create is in flight
// as the plugin connects, each reach the plugin exactly once, either in its
// Synchronize set or as a CreateContainer event.
func TestLateJoiningPluginSeesEveryContainerOnce(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "nri.sock")
	if err := os.MkdirAll(filepath.Join(dir, "plugins"), 0o755); err != nil {
		t.Fatal(err)
	}
	n, err := New(Options{
		RuntimeName: "pod-shim-test", RuntimeVersion: "0",
		SocketPath: sock, PluginPath: filepath.Join(dir, "plugins"), PluginConfigPath: filepath.Join(dir, "conf.d"),
		RequestTimeout: 30 * time.Second, RegistrationTimeout: 30 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	pod := &sandbox.Sandbox{ID: "pod1", State: sandbox.StateReady, Config: sandbox.Config{Name: "p", Namespace: "ns", UID: "u"}}
	ctrs := &fakeContainers{recs: map[string]*container.Container{}}
	if err := n.Start(&fakeSandboxes{pod: pod}, ctrs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)

	var ids []string
	for i := range 2 {
		id := fmt.Sprintf("before%d", i)
		ctrs.create(t, n, pod.ID, id, nil)
		ids = append(ids, id)
	}

	// One Create is in flight as the plugin connects: the plugin's
	// synchronization waits for it.
	inFlight := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctrs.create(t, n, pod.ID, "inflight", inFlight)
	}()
	ids = append(ids, "inflight")
	waitFor(t, "the in-flight create's record", func() bool {
		ctrs.mu.Lock()
		defer ctrs.mu.Unlock()
		return ctrs.recs["inflight"] != nil
	})

	p := &syncPlugin{reached: make(chan struct{}), release: make(chan struct{}), synced: map[string]int{}, created: map[string]int{}}
	s, err := stub.New(p, stub.WithSocketPath(sock), stub.WithPluginName("late"), stub.WithPluginIdx("10"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan error, 1)
	go func() { started <- s.Start(ctx) }()
	t.Cleanup(s.Stop)
	close(inFlight)
	<-p.reached

	// Creates while the plugin synchronizes.
	for i := range 3 {
		id := fmt.Sprintf("during%d", i)
		ids = append(ids, id)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctrs.create(t, n, pod.ID, id, nil)
		}()
	}
	close(p.release)
	if err := <-started; err != nil {
		t.Fatalf("plugin start: %v", err)
	}
	wg.Wait()
	for i := range 2 {
		id := fmt.Sprintf("after%d", i)
		ctrs.create(t, n, pod.ID, id, nil)
		ids = append(ids, id)
	}

	for _, id := range ids {
		waitFor(t, "container "+id+" to reach the plugin", func() bool {
			synced, created := p.seen(id)
			return synced+created > 0
		})
		if synced, created := p.seen(id); synced+created != 1 {
			t.Errorf("container %s reached the plugin %d times in Synchronize and %d as CreateContainer, want once", id, synced, created)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
