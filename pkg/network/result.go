package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// newResult extracts the pod's addresses from a CNI result of any version.
// Addresses on the pod's own interfaces (those with a sandbox) come first;
// results without interface details (IPAM-only chains) count all of them.
func newResult(network string, res types.Result) (*Result, error) {
	raw, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("encode cni result: %w", err)
	}
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("convert cni result: %w", err)
	}
	var v4, v6 []string
	for _, ip := range r.IPs {
		if ip.Interface != nil {
			i := *ip.Interface
			if i < 0 || i >= len(r.Interfaces) || r.Interfaces[i].Sandbox == "" {
				continue
			}
		}
		// A loopback plugin in the chain reports lo's addresses too.
		if ip.Address.IP.IsLoopback() {
			continue
		}
		if ip.Address.IP.To4() != nil {
			v4 = append(v4, ip.Address.IP.String())
		} else {
			v6 = append(v6, ip.Address.IP.String())
		}
	}
	ips := slices.Concat(v4, v6)
	if len(ips) == 0 {
		return nil, errors.New("cni result has no pod address")
	}
	return &Result{IPs: ips, Interface: ifName, Network: network, Raw: raw}, nil
}
