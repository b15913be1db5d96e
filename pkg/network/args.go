package network

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
)

// ErrInvalidPod marks a Setup refused because of what the pod asked for
// (a bad port mapping or bandwidth annotation), not because of the host.
var ErrInvalidPod = errors.New("invalid pod network request")

// Annotations kubelet (and the bandwidth CNI plugin convention) use for
// traffic shaping, in bits per second as a Kubernetes quantity.
const (
	IngressBandwidthAnnotation = "kubernetes.io/ingress-bandwidth"
	EgressBandwidthAnnotation  = "kubernetes.io/egress-bandwidth"
)

// PodAnnotationsCapability is the capability under which containerd and
// CRI-O hand plugins the pod's annotations.
const PodAnnotationsCapability = "io.kubernetes.cri.pod-annotations"

// cniArgs is the CNI_ARGS every k8s-aware plugin expects. IgnoreUnknown
// keeps plugins that don't know the K8S_ keys from failing on them.
func cniArgs(pod Pod) [][2]string {
	return [][2]string{
		{"IgnoreUnknown", "1"},
		{"K8S_POD_NAMESPACE", pod.Namespace},
		{"K8S_POD_NAME", pod.Name},
		{"K8S_POD_INFRA_CONTAINER_ID", pod.ID},
		{"K8S_POD_UID", pod.UID},
	}
}

// portMapEntry is the "portMappings" capability format of the CNI conventions.
type portMapEntry struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// bandwidthEntry is the "bandwidth" capability format, in bits per second.
type bandwidthEntry struct {
	IngressRate  uint64 `json:"ingressRate,omitempty"`
	IngressBurst uint64 `json:"ingressBurst,omitempty"`
	EgressRate   uint64 `json:"egressRate,omitempty"`
	EgressBurst  uint64 `json:"egressBurst,omitempty"`
}

// capabilityArgs builds the runtimeConfig values; libcni hands each plugin
// only those it declares in "capabilities".
func capabilityArgs(pod Pod) (map[string]any, error) {
	caps := map[string]any{}
	var ports []portMapEntry
	for _, pm := range pod.PortMappings {
		// As kubelet and containerd do: a mapping without a host port only
		// documents the container port and needs no DNAT.
		if pm.HostPort <= 0 {
			continue
		}
		if pm.HostPort > 65535 || pm.ContainerPort <= 0 || pm.ContainerPort > 65535 {
			return nil, fmt.Errorf("%w: port mapping %d->%d out of range", ErrInvalidPod, pm.HostPort, pm.ContainerPort)
		}
		proto := strings.ToLower(pm.Protocol)
		switch proto {
		case "":
			proto = "tcp"
		case "tcp", "udp", "sctp":
		default:
			return nil, fmt.Errorf("%w: port mapping protocol %q", ErrInvalidPod, pm.Protocol)
		}
		ports = append(ports, portMapEntry{HostPort: pm.HostPort, ContainerPort: pm.ContainerPort, Protocol: proto, HostIP: pm.HostIP})
	}
	if len(ports) > 0 {
		caps["portMappings"] = ports
	}
	bw, err := bandwidth(pod.Annotations)
	if err != nil {
		return nil, err
	}
	if bw != nil {
		caps["bandwidth"] = bw
	}
	if pod.CgroupParent != "" {
		caps["cgroupPath"] = pod.CgroupParent
	}
	// containerd passes the sandbox's DNS config as "dns"; neither it nor
	// CRI-O has a Kubernetes source for the "ips" or "mac" capabilities (CRI
	// carries no static IP or MAC, and an annotation for them would be ours
	// alone), so plugins that want those read the pod annotations below.
	if pod.DNS != nil {
		caps["dns"] = pod.DNS
	}
	// As containerd and CRI-O do, so that plugins (Multus, static-IP IPAMs)
	// can read the pod's annotations when they declare this capability.
	if len(pod.Annotations) > 0 {
		caps[PodAnnotationsCapability] = pod.Annotations
	}
	return caps, nil
}

// bandwidth reads the shaping annotations. The burst is left unbounded as
// containerd does, because Kubernetes has no way to ask for one.
func bandwidth(annotations map[string]string) (*bandwidthEntry, error) {
	var bw bandwidthEntry
	for _, a := range []struct {
		key        string
		rate, brst *uint64
	}{
		{IngressBandwidthAnnotation, &bw.IngressRate, &bw.IngressBurst},
		{EgressBandwidthAnnotation, &bw.EgressRate, &bw.EgressBurst},
	} {
		v, ok := annotations[a.key]
		if !ok {
			continue
		}
		rate, err := parseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("%w: annotation %s=%q: %v", ErrInvalidPod, a.key, v, err)
		}
		// The bounds kubelet enforces: below 1k the shaper is useless, above
		// 1P it overflows the kernel's rate fields.
		if rate < 1e3 || rate > 1e15 {
			return nil, fmt.Errorf("%w: annotation %s=%q: must be between 1k and 1P", ErrInvalidPod, a.key, v)
		}
		*a.rate, *a.brst = rate, math.MaxUint32
	}
	if bw == (bandwidthEntry{}) {
		return nil, nil
	}
	return &bw, nil
}

var quantitySuffixes = map[string]*big.Rat{
	"": big.NewRat(1, 1), "m": big.NewRat(1, 1000), "k": big.NewRat(1e3, 1), "M": big.NewRat(1e6, 1),
	"G": big.NewRat(1e9, 1), "T": big.NewRat(1e12, 1), "P": big.NewRat(1e15, 1), "E": big.NewRat(1e18, 1),
	"Ki": big.NewRat(1<<10, 1), "Mi": big.NewRat(1<<20, 1), "Gi": big.NewRat(1<<30, 1),
	"Ti": big.NewRat(1<<40, 1), "Pi": big.NewRat(1<<50, 1), "Ei": big.NewRat(1<<60, 1),
}

// parseQuantity reads the Kubernetes quantity forms an annotation can hold
// ("10M", "1.5Gi", "100k", "2e6") and rounds up to a whole number, as
// resource.Quantity.Value does; pulling in apimachinery for this alone
// would cost more than it saves.
func parseQuantity(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	num := strings.TrimRightFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	suffix := s[len(num):]
	mult, ok := quantitySuffixes[suffix]
	if !ok {
		// Exponent forms ("2e6") end in digits, so they land here whole.
		mult = big.NewRat(1, 1)
		num = s
	}
	if num == "" || strings.HasPrefix(num, "+") || strings.HasPrefix(num, "-") {
		return 0, errors.New("not a positive quantity")
	}
	v, ok := new(big.Rat).SetString(num)
	if !ok || v.Sign() < 0 {
		return 0, errors.New("not a quantity")
	}
	v.Mul(v, mult)
	q, r := new(big.Int).QuoRem(v.Num(), v.Denom(), new(big.Int))
	if r.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsUint64() {
		return 0, errors.New("quantity too large")
	}
	return q.Uint64(), nil
}
