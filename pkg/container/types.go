// Package container runs a pod's app containers: the OCI spec built from
// what the kubelet asks, the overlay rootfs, and create/start/stop/remove,
// status and exec through the pod's monitor.
package container

import (
	"errors"
	"sort"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// KeyValue is one environment variable.
type KeyValue struct{ Key, Value string }

// Propagation of a bind mount, valued as the CRI enum.
type Propagation int

// The propagation modes.
const (
	PropagationPrivate         Propagation = 0
	PropagationHostToContainer Propagation = 1 // rslave
	PropagationBidirectional   Propagation = 2 // rshared
)

// Mount is a host path bound into the container.
type Mount struct {
	ContainerPath     string
	HostPath          string
	Readonly          bool
	RecursiveReadonly bool
	SelinuxRelabel    bool
	Propagation       Propagation
	// Image, when set, makes this an image volume: that image's rootfs
	// mounted read-only at ContainerPath (HostPath is then unused).
	Image        string
	ImageSubPath string
	// ImageRef is the image volume's image id, resolved at create: status
	// reports it as the mount's image_ref (the id PullImage returned).
	ImageRef string
	// UIDMappings and GIDMappings make the mount idmapped (the kubelet
	// sets the pod's user namespace mappings on a hostUsers: false pod's
	// volumes); see userns.go.
	UIDMappings []specs.LinuxIDMapping `json:",omitempty"`
	GIDMappings []specs.LinuxIDMapping `json:",omitempty"`
}

// Device is a host device made available in the container.
type Device struct {
	ContainerPath, HostPath, Permissions string
}

// Resources are the container's cgroup limits.
type Resources struct {
	CPUPeriod, CPUQuota, CPUShares int64
	MemoryLimit                    int64
	OOMScoreAdj                    int64
	CpusetCPUs, CpusetMems         string
	MemorySwapLimit                int64
	HugepageLimits                 map[string]uint64
	Unified                        map[string]string
}

// HugepageLimit is one page size's limit, in bytes.
type HugepageLimit struct {
	PageSize string // "2MB", "1GB", as the kubelet and the cgroup files name it
	Limit    uint64
}

// Hugepages are r's hugepage limits smallest page first: one order for the
// spec, the cgroup files and the reported status, where ranging over the
// map would give a different one each time.
func (r *Resources) Hugepages() []HugepageLimit {
	if r == nil || len(r.HugepageLimits) == 0 {
		return nil
	}
	out := make([]HugepageLimit, 0, len(r.HugepageLimits))
	for size, limit := range r.HugepageLimits {
		out = append(out, HugepageLimit{PageSize: size, Limit: limit})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := pageBytes(out[i].PageSize), pageBytes(out[j].PageSize)
		if a != b {
			return a < b
		}
		return out[i].PageSize < out[j].PageSize
	})
	return out
}

// pageBytes reads a page size such as "64KB", "2MB" or "1GB"; anything
// else is 0 (and sorts by name among its like).
func pageBytes(s string) uint64 {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"KB", 10}, {"MB", 20}, {"GB", 30}, {"TB", 40}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			if v, err := strconv.ParseUint(n, 10, 64); err == nil {
				return v << u.shift
			}
		}
	}
	return 0
}

// SupplementalGroupsPolicy says whether the image's /etc/group memberships
// of the user are merged into the supplemental groups (the default) or not.
type SupplementalGroupsPolicy int

// The policies, valued as the CRI enum.
const (
	GroupsMerge  SupplementalGroupsPolicy = 0
	GroupsStrict SupplementalGroupsPolicy = 1
)

// ProfileType is a seccomp or AppArmor profile kind, valued as the CRI enum.
type ProfileType int

// The profile types.
const (
	ProfileRuntimeDefault ProfileType = 0
	ProfileUnconfined     ProfileType = 1
	ProfileLocalhost      ProfileType = 2
)

// Profile is a seccomp or AppArmor profile; nil means none was asked for.
type Profile struct {
	Type         ProfileType
	LocalhostRef string // a profile file (seccomp) or a loaded profile name (AppArmor)
}

// SELinux is the container's SELinux label.
type SELinux struct {
	User, Role, Type, Level string
}

// User is the identity a container's process runs as.
type User struct {
	UID, GID           int64
	SupplementalGroups []int64
}

// Capabilities adds and drops from the default set.
type Capabilities struct {
	Add, Drop, AddAmbient []string
}

// Security is the container's security context.
type Security struct {
	Privileged         bool
	RunAsUser          *int64
	RunAsGroup         *int64
	RunAsUsername      string
	SupplementalGroups []int64
	GroupsPolicy       SupplementalGroupsPolicy
	ReadonlyRootfs     bool
	NoNewPrivs         bool
	Capabilities       *Capabilities
	MaskedPaths        []string
	ReadonlyPaths      []string
	PIDMode            sandbox.NamespaceMode
	IPCMode            sandbox.NamespaceMode
	NetworkMode        sandbox.NamespaceMode
	TargetID           string
	Sysctls            map[string]string
	Seccomp            *Profile
	Apparmor           *Profile
	SELinux            *SELinux
}

// Config is what the kubelet asks a container to be.
type Config struct {
	Name    string
	Attempt uint32
	Image   string // as the kubelet named it (usually the image id)
	// UserSpecifiedImage is the image as the pod spec names it; the kubelet
	// resolves it to the id in Image and expects it back in statuses.
	UserSpecifiedImage string

	Command    []string
	Args       []string
	WorkingDir string
	Envs       []KeyValue
	Mounts     []Mount
	Devices    []Device
	CDIDevices []string // fully qualified CDI device names, vendor.com/class=name

	Labels      map[string]string
	Annotations map[string]string
	LogPath     string // relative to the sandbox's log directory

	Stdin, StdinOnce, Tty bool
	StopSignal            string

	Resources *Resources
	Security  Security
}

// State is a container's lifecycle state, as CRI reports it.
type State string

// The container states.
const (
	StateCreating State = "creating" // intent recorded, not yet created
	StateCreated  State = "created"
	StateStarting State = "starting" // intent recorded before runc runs it; CRI sees created
	StateRunning  State = "running"
	StateExited   State = "exited"
	StateUnknown  State = "unknown"
)

// Container is the durable record of one container.
type Container struct {
	ID        string
	SandboxID string
	Config    Config

	ImageID  string // sha256:…
	ImageRef string // what status reports as image_ref: the repo digest when known, else the id
	LogPath  string // absolute; "" when the kubelet asked for none
	Bundle   string
	Rootfs   string

	State      State
	Pid        int
	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	ExitCode   int32
	Reason     string
	Message    string
	StopSignal string

	// User is the effective identity, as resolved at create.
	User *User
	// Resources are the limits in force: the config's, then each update's.
	Resources *Resources
}

// Errors callers map to gRPC codes.
var (
	ErrNotFound      = errors.New("container not found")
	ErrAlreadyExists = errors.New("container name already in use")
	ErrInvalid       = errors.New("invalid container config")
	ErrState         = errors.New("container is not in the right state")
)

// Filter selects containers in List.
type Filter struct {
	ID        string
	SandboxID string
	State     *State
	Labels    map[string]string
}

// ExecResult is the outcome of ExecSync.
type ExecResult struct {
	Stdout, Stderr []byte
	ExitCode       int32
}
