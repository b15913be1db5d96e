// Package sandbox runs pod sandboxes: the pinned network namespace, the CNI
// attachment, the pause container that is the pod's PID 1, the pod's monitor
// process, and the files every container of the pod shares (hostname, hosts,
// resolv.conf, /dev/shm).
package sandbox

import (
	"errors"
	"time"

	"github.com/pod-shim/pod-shim/pkg/network"
)

// NamespaceMode says where a pod's namespace comes from; the values follow
// the CRI enum so translation is a cast.
type NamespaceMode int

// The namespace modes.
const (
	ModePod       NamespaceMode = 0 // shared by the pod, held by pause
	ModeContainer NamespaceMode = 1 // the container's own
	ModeNode      NamespaceMode = 2 // the host's
	ModeTarget    NamespaceMode = 3 // another container's
)

// Namespaces are the pod-level namespace choices.
type Namespaces struct {
	Network NamespaceMode
	PID     NamespaceMode
	IPC     NamespaceMode
}

// DNS is the resolv.conf content asked for by the kubelet.
type DNS struct {
	Servers  []string
	Searches []string
	Options  []string
}

// Config is what a caller asks a sandbox to be.
type Config struct {
	Name      string
	UID       string
	Namespace string
	Attempt   uint32

	Hostname     string
	LogDirectory string
	DNS          *DNS
	PortMappings []network.PortMapping
	Labels       map[string]string
	Annotations  map[string]string

	CgroupParent   string
	Resources      *Resources // the sum of the containers', for the pod cgroup
	Overhead       *Resources // the runtime class's pod overhead
	Namespaces     Namespaces
	UserNS         *UserNS `json:",omitempty"`
	Sysctls        map[string]string
	Privileged     bool
	RuntimeHandler string
}

// State is a sandbox's lifecycle state as CRI sees it.
type State string

// The sandbox states. Creating is the durable intent record written before
// anything touches the host; recovery finishes or undoes it.
const (
	StateCreating State = "creating"
	StateReady    State = "ready"
	StateNotReady State = "notready"
)

// Sandbox is the durable record of one pod sandbox.
type Sandbox struct {
	ID        string
	Config    Config
	CreatedAt time.Time
	State     State

	// Dir holds the pod's volatile files: monitor socket, exits, pause
	// bundle, hostname, hosts, resolv.conf, shm.
	Dir        string
	NetNSPath  string // "" for host-network pods
	Network    *network.Result
	PausePID   int
	PauseImage string // "" when the built-in pause ran
	CgroupPath string
	// CreatedCgroups are the cgroup_parent directories that did not exist
	// before this pod's Run, deepest first; Remove takes them away again.
	CreatedCgroups []string `json:",omitempty"`

	// NetworkTornDown records a successful CNI DEL so it is not repeated.
	NetworkTornDown bool
}

// IP is the pod's primary IP, "" when it has none.
func (s *Sandbox) IP() string {
	if s.Network == nil || len(s.Network.IPs) == 0 {
		return ""
	}
	return s.Network.IPs[0]
}

// AdditionalIPs are the pod's IPs beyond the first.
func (s *Sandbox) AdditionalIPs() []string {
	if s.Network == nil || len(s.Network.IPs) < 2 {
		return nil
	}
	return s.Network.IPs[1:]
}

// HostNetwork says whether the pod shares the node's network.
func (s *Sandbox) HostNetwork() bool { return s.Config.Namespaces.Network == ModeNode }

// Paths of the pod files that containers mount.
func (s *Sandbox) HostnamePath() string   { return s.Dir + "/hostname" }
func (s *Sandbox) HostsPath() string      { return s.Dir + "/hosts" }
func (s *Sandbox) ResolvConfPath() string { return s.Dir + "/resolv.conf" }
func (s *Sandbox) ShmPath() string        { return s.Dir + "/shm" }

// Errors callers map to gRPC codes.
var (
	ErrNotFound      = errors.New("sandbox not found")
	ErrAlreadyExists = errors.New("sandbox name already in use")
	ErrInvalid       = errors.New("invalid sandbox config")
	ErrNotReady      = errors.New("sandbox is not ready")
)

// Filter selects sandboxes in List.
type Filter struct {
	ID     string // exact id or unique prefix
	State  *State
	Labels map[string]string
}
