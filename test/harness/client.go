package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Crictl runs the real crictl against the daemon and fails the test on error.
func (d *Daemon) Crictl(args ...string) string {
	d.T.Helper()
	out, err := d.CrictlErr(args...)
	if err != nil {
		d.T.Fatalf("crictl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// CrictlErr runs crictl and returns stdout; the error (a *CrictlError)
// carries stderr and the exit code.
func (d *Daemon) CrictlErr(args ...string) (string, error) {
	full := append([]string{"--config", d.CrictlYAML, "--runtime-endpoint", "unix://" + d.Sock, "--image-endpoint", "unix://" + d.Sock, "--timeout", "30s"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, CrictlPath(), full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &CrictlError{Err: err, Stderr: strings.TrimSpace(stderr.String()), Stdout: strings.TrimSpace(stdout.String())}
	}
	return stdout.String(), nil
}

// CrictlError is a failed crictl run.
type CrictlError struct {
	Err            error
	Stdout, Stderr string
}

func (e *CrictlError) Error() string {
	return fmt.Sprintf("%v; stderr: %s; stdout: %s", e.Err, e.Stderr, e.Stdout)
}

// ExitCode is crictl's exit status, -1 if it did not exit by itself.
func (e *CrictlError) ExitCode() int {
	var ee *exec.ExitError
	if errors.As(e.Err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// DialCRI opens a CRI gRPC connection to a socket, closed at the test's end.
func DialCRI(t testing.TB, sock string) (cri.RuntimeServiceClient, cri.ImageServiceClient) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return cri.NewRuntimeServiceClient(conn), cri.NewImageServiceClient(conn)
}

// Client opens a new CRI gRPC connection to the daemon (RS and IS share one).
func (d *Daemon) Client() (cri.RuntimeServiceClient, cri.ImageServiceClient) {
	return DialCRI(d.T, d.Sock)
}

// PodConfigFile writes a sandbox config in crictl's JSON form (snake_case,
// as the CRI types' json tags) and returns its path.
func (d *Daemon) PodConfigFile(name string) string {
	d.T.Helper()
	labels := map[string]string{"pod": name}
	for k, v := range d.Opts.Labels {
		labels[k] = v
	}
	file := filepath.Join(d.Base, "pod-"+name+".json")
	WriteJSON(d.T, file, map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": d.Opts.Namespace, "uid": RandHex(16), "attempt": 0},
		"hostname":      name,
		"log_directory": filepath.Join(d.LogDir, name),
		"labels":        labels,
		"linux":         map[string]any{},
	})
	return file
}

// ContainerConfigFile writes a container config in crictl's JSON form.
func (d *Daemon) ContainerConfigFile(name, image string, command ...string) string {
	d.T.Helper()
	file := filepath.Join(d.Base, "ctr-"+name+"-"+RandHex(3)+".json")
	WriteJSON(d.T, file, map[string]any{
		"metadata": map[string]any{"name": name, "attempt": 0},
		"image":    map[string]string{"image": image},
		"command":  command,
		"log_path": name + ".log",
		"labels":   d.Opts.Labels,
		"linux":    map[string]any{},
	})
	return file
}

// CrictlRunPod runs a pod through crictl runp and records it for the leftover checks.
func (d *Daemon) CrictlRunPod(name string) (id string, cfg string) {
	d.T.Helper()
	cfg = d.PodConfigFile(name)
	id = strings.TrimSpace(d.Crictl("runp", cfg))
	if len(id) != 64 {
		d.T.Fatalf("crictl runp printed %q, want a 64-hex pod id", id)
	}
	d.RecordPod(id)
	return id, cfg
}

// RecordPod remembers a pod the test made, for the leftover checks and cleanup.
func (d *Daemon) RecordPod(id string) {
	d.mu.Lock()
	d.podIDs[id] = true
	d.mu.Unlock()
}

// PodConfig is a plain pod on the CNI network; opts adjust it.
func (d *Daemon) PodConfig(name string, opts ...func(*cri.PodSandboxConfig)) *cri.PodSandboxConfig {
	labels := map[string]string{}
	for k, v := range d.Opts.Labels {
		labels[k] = v
	}
	c := &cri.PodSandboxConfig{
		Metadata:     &cri.PodSandboxMetadata{Name: name, Namespace: d.Opts.Namespace, Uid: RandHex(16)},
		Hostname:     name,
		LogDirectory: filepath.Join(d.LogDir, name),
		Labels:       labels,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// RunPod runs a pod over CRI and records it.
func (d *Daemon) RunPod(cfg *cri.PodSandboxConfig) string {
	d.T.Helper()
	r, err := d.RS.RunPodSandbox(Ctx(d.T), &cri.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		d.T.Fatalf("RunPodSandbox %s: %v", cfg.Metadata.Name, err)
	}
	d.RecordPod(r.PodSandboxId)
	return r.PodSandboxId
}

// Pull pulls the busybox test image into the daemon and returns its reference.
func (d *Daemon) Pull() string {
	d.T.Helper()
	ref := Busybox(d.T)
	if _, err := d.IS.PullImage(Ctx(d.T), &cri.PullImageRequest{Image: &cri.ImageSpec{Image: ref}}); err != nil {
		d.T.Fatalf("PullImage %s: %v", ref, err)
	}
	return ref
}

// ContainerConfig is a container of image running command.
func ContainerConfig(name, image string, command ...string) *cri.ContainerConfig {
	return &cri.ContainerConfig{
		Metadata: &cri.ContainerMetadata{Name: name},
		Image:    &cri.ImageSpec{Image: image},
		Command:  command,
		LogPath:  name + ".log",
	}
}

// CreateContainer creates a container in the pod.
func (d *Daemon) CreateContainer(podID string, podCfg *cri.PodSandboxConfig, cfg *cri.ContainerConfig) (string, error) {
	r, err := d.RS.CreateContainer(Ctx(d.T), &cri.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		return "", err
	}
	return r.ContainerId, nil
}

// StartContainer creates and starts a container in the pod.
func (d *Daemon) StartContainer(podID string, podCfg *cri.PodSandboxConfig, cfg *cri.ContainerConfig) string {
	d.T.Helper()
	id, err := d.CreateContainer(podID, podCfg, cfg)
	if err != nil {
		d.T.Fatalf("CreateContainer: %v", err)
	}
	if _, err := d.RS.StartContainer(Ctx(d.T), &cri.StartContainerRequest{ContainerId: id}); err != nil {
		d.T.Fatalf("StartContainer: %v", err)
	}
	return id
}

// ContainerStatus fails the test if the daemon can't tell it.
func (d *Daemon) ContainerStatus(id string) *cri.ContainerStatus {
	d.T.Helper()
	r, err := d.RS.ContainerStatus(Ctx(d.T), &cri.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		d.T.Fatalf("ContainerStatus %s: %v", id, err)
	}
	return r.Status
}

// PodStatus is the verbose PodSandboxStatus; it fails the test on error.
func (d *Daemon) PodStatus(id string) *cri.PodSandboxStatusResponse {
	d.T.Helper()
	r, err := d.RS.PodSandboxStatus(Ctx(d.T), &cri.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		d.T.Fatalf("PodSandboxStatus %s: %v", id, err)
	}
	return r
}

// PodState is the pod's state; it fails the test on error.
func (d *Daemon) PodState(id string) cri.PodSandboxState {
	d.T.Helper()
	r, err := d.RS.PodSandboxStatus(Ctx(d.T), &cri.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		d.T.Fatalf("PodSandboxStatus %s: %v", id, err)
	}
	return r.Status.State
}

// StopPod is StopPodSandbox.
func (d *Daemon) StopPod(id string) error {
	_, err := d.RS.StopPodSandbox(Ctx(d.T), &cri.StopPodSandboxRequest{PodSandboxId: id})
	return err
}

// RemovePod is RemovePodSandbox.
func (d *Daemon) RemovePod(id string) error {
	_, err := d.RS.RemovePodSandbox(Ctx(d.T), &cri.RemovePodSandboxRequest{PodSandboxId: id})
	return err
}

// RemoveAll stops and removes every pod the daemon lists; errors fail the test.
func (d *Daemon) RemoveAll() {
	d.T.Helper()
	r, err := d.RS.ListPodSandbox(Ctx(d.T), &cri.ListPodSandboxRequest{})
	if err != nil {
		d.T.Fatalf("ListPodSandbox: %v", err)
	}
	for _, p := range r.Items {
		if err := d.StopPod(p.Id); err != nil {
			d.T.Errorf("StopPodSandbox %s: %v", p.Id, err)
		}
		if err := d.RemovePod(p.Id); err != nil {
			d.T.Errorf("RemovePodSandbox %s: %v", p.Id, err)
		}
	}
}

// CrictlJSON runs crictl (with -o json among args) and decodes its output into v.
func (d *Daemon) CrictlJSON(v any, args ...string) {
	d.T.Helper()
	out := d.Crictl(args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		d.T.Fatalf("crictl %s: output is not the expected JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// CrictlContainerStatus is what the suites read of `crictl inspect -o json`.
type CrictlContainerStatus struct {
	Status struct {
		ID       string `json:"id"`
		State    string `json:"state"`
		ExitCode int    `json:"exitCode"`
		Reason   string `json:"reason"`
		LogPath  string `json:"logPath"`
	} `json:"status"`
}

// CrictlStartContainer creates and starts a container with crictl and
// checks it runs and logs to a file under the daemon's pod log dirs.
func (d *Daemon) CrictlStartContainer(podID, ctrCfg, podCfg string) string {
	d.T.Helper()
	id := strings.TrimSpace(d.Crictl("create", podID, ctrCfg, podCfg))
	if len(id) != 64 {
		d.T.Fatalf("crictl create printed %q, want a 64-hex container id", id)
	}
	d.Crictl("start", id)
	var cs CrictlContainerStatus
	d.CrictlJSON(&cs, "inspect", "-o", "json", id)
	if cs.Status.State != "CONTAINER_RUNNING" {
		d.T.Fatalf("container %s state %s after start, want CONTAINER_RUNNING (exit %d, %s)", id, cs.Status.State, cs.Status.ExitCode, cs.Status.Reason)
	}
	if _, err := os.Stat(cs.Status.LogPath); err != nil {
		d.T.Errorf("log file of a started container: %v", err)
	}
	if !strings.HasPrefix(cs.Status.LogPath, d.LogDir) {
		d.T.Errorf("log path %s is not under the pod's log_directory %s", cs.Status.LogPath, d.LogDir)
	}
	return id
}
