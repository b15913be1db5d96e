// Package nri tests pod-shim's NRI hosting with a tiny NRI plugin of its own
// (NRI's stub package), connected over the daemon's --nri-socket.
package nri

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

const (
	envKey  = "NRI_INJECTED"
	envVal  = "by-pod-shim-test-plugin"
	annoKey = "test.pod-shim.io/nri"
)

// injector adds an env var and an annotation to every container it is
// told of, and counts Synchronize and CreateContainer calls.
type injector struct {
	synced  chan struct{}
	created chan string
}

func (p *injector) Synchronize(_ context.Context, _ []*api.PodSandbox, _ []*api.Container) ([]*api.ContainerUpdate, error) {
	close(p.synced)
	return nil, nil
}

func (p *injector) CreateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	adj := &api.ContainerAdjustment{}
	adj.AddEnv(envKey, envVal)
	adj.AddAnnotation(annoKey, c.GetName())
	select {
	case p.created <- c.GetId():
	default:
	}
	return adj, nil, nil
}

func TestPluginAdjustsContainers(t *testing.T) {
	harness.RequireCrictlHost(t)
	sock := filepath.Join(t.TempDir(), "nri.sock")
	d := harness.Start(t, harness.Options{
		Tag: "nri", Namespace: "nri-test", Labels: map[string]string{"e2e": "pod-shim"},
		// No plugins from the host's /opt/nri/plugins.
		Config:    "[nri]\nplugin_path = '" + t.TempDir() + "'\nplugin_config_path = '" + t.TempDir() + "'\n",
		ExtraArgs: []string{"--nri-socket", sock},
	})

	p := &injector{synced: make(chan struct{}), created: make(chan string, 4)}
	s, err := stub.New(p, stub.WithPluginName("inject"), stub.WithPluginIdx("50"), stub.WithSocketPath(sock))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("plugin did not connect: %v", err)
	}
	defer s.Stop()
	select {
	case <-p.synced:
	case <-time.After(30 * time.Second):
		t.Fatal("plugin was never synchronized")
	}

	image := d.Pull()
	podCfg := d.PodConfig("nri-pod")
	pod := d.RunPod(podCfg)
	id := d.StartContainer(pod, podCfg, harness.ContainerConfig("nri-ctr", image, "sleep", "300"))
	select {
	case got := <-p.created:
		if got != id {
			t.Errorf("plugin saw CreateContainer of %s, want %s", got, id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("plugin was not told of CreateContainer")
	}

	// The env var is in the running container's environment.
	r, err := d.RS.ExecSync(harness.Ctx(t), &cri.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", "echo $" + envKey}, Timeout: 30})
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	if got := strings.TrimSpace(string(r.Stdout)); got != envVal {
		t.Errorf("%s in the container = %q (stderr %q), want %q", envKey, got, r.Stderr, envVal)
	}
	// The annotation is in the OCI spec runc ran it with; the container
	// sees its own spec only through the runtime, so read the bundle.
	data, err := os.ReadFile(filepath.Join(d.State, "containers", id, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	if got := spec.Annotations[annoKey]; got != "nri-ctr" {
		t.Errorf("annotation %s = %q, want %q", annoKey, got, "nri-ctr")
	}
}
