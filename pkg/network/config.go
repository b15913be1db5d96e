package network

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
)

// confExtensions are the file kinds the CNI conventions recognise.
var confExtensions = []string{".conf", ".conflist", ".json"}

// confSet is one load of the conf dir: every valid network by name, and
// the default one (from the lexically first valid file).
type confSet struct {
	stamp    string // what the dir looked like when loaded
	networks map[string]*libcni.NetworkConfigList
	def      *libcni.NetworkConfigList
	defFile  string
	rawDef   []byte // the default network's file content, before pod CIDR substitution
	problem  string // why there is no default network, if there is none
}

// confStamp summarises the conf dir cheaply (one getdents plus a stat per
// entry) so a change is noticed without parsing every file on every call.
// Sub-directories count too: libcni reads plugin confs from dir/<network>/.
func confStamp(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "missing", nil
	}
	if err != nil {
		return "", fmt.Errorf("read cni conf dir: %w", err)
	}
	var b strings.Builder
	for _, e := range entries {
		if !e.IsDir() && !slices.Contains(confExtensions, filepath.Ext(e.Name())) {
			continue
		}
		// Stat follows symlinks, which is how confs are often installed.
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil {
			fmt.Fprintf(&b, "%s:gone;", e.Name())
			continue
		}
		fmt.Fprintf(&b, "%s:%d:%d;", e.Name(), fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), nil
}

// loadConfDir parses every network config in dir. Files that don't parse
// are skipped (a conf being written or a stray file must not take the node
// off the network while a valid one is there) but reported when nothing
// valid is left.
func loadConfDir(dir, stamp string, podCIDRs []string) *confSet {
	cs := &confSet{stamp: stamp, networks: map[string]*libcni.NetworkConfigList{}}
	files, err := libcni.ConfFiles(dir, confExtensions)
	if err != nil {
		cs.problem = fmt.Sprintf("cannot read network config dir %s: %v", dir, err)
		return cs
	}
	slices.Sort(files)
	var bad []string
	for _, f := range files {
		list, err := loadConfFile(f)
		var raw []byte
		if err == nil {
			raw = list.Bytes
			list, err = withPodCIDR(list, podCIDRs)
		}
		if errors.Is(err, errNoPodCIDR) && cs.def == nil {
			// The first network waits for the CIDR; falling through to
			// the next file would put pods on a network nobody chose.
			cs.problem = fmt.Sprintf("network config %s %v", filepath.Base(f), err)
			return cs
		}
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", filepath.Base(f), err))
			continue
		}
		if _, dup := cs.networks[list.Name]; dup {
			continue // the lexically first file wins, as for the default
		}
		cs.networks[list.Name] = list
		if cs.def == nil {
			cs.def, cs.defFile, cs.rawDef = list, f, raw
		}
	}
	if cs.def == nil {
		cs.problem = "no network config found in " + dir
		if len(bad) > 0 {
			cs.problem = fmt.Sprintf("no valid network config in %s: %s", dir, strings.Join(bad, "; "))
		}
	}
	return cs
}

func loadConfFile(file string) (*libcni.NetworkConfigList, error) {
	if filepath.Ext(file) == ".conflist" {
		return libcni.ConfListFromFile(file)
	}
	// A single-plugin .conf, which the kubelet's conventions still load
	// but libcni no longer parses as such: it becomes a list of one.
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var head struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("parse %s: %w", file, err)
	}
	if head.Name == "" {
		return nil, errors.New("no network name")
	}
	list, err := json.Marshal(map[string]any{
		"cniVersion": head.CNIVersion,
		"name":       head.Name,
		"plugins":    []json.RawMessage{data},
	})
	if err != nil {
		return nil, err
	}
	return libcni.NetworkConfFromBytes(list)
}

// The placeholders a network config may put where a subnet goes (the
// convention Calico's host-local configs use) to get the node's pod CIDR
// from UpdateRuntimeConfig: the IPv4 range for usePodCidr, the IPv6 one
// for usePodCidrIPv6.
const (
	podCIDRPlaceholder   = `"usePodCidr"`
	podCIDRv6Placeholder = `"usePodCidrIPv6"`
)

// errNoPodCIDR marks a config that waits for UpdateRuntimeConfig.
var errNoPodCIDR = errors.New("uses the pod CIDR, which the kubelet has not sent yet (UpdateRuntimeConfig)")

// withPodCIDR substitutes the node's pod CIDRs into a config that asks for
// them; any other config is returned as is.
func withPodCIDR(list *libcni.NetworkConfigList, cidrs []string) (*libcni.NetworkConfigList, error) {
	b := list.Bytes
	if !bytes.Contains(b, []byte(podCIDRPlaceholder)) && !bytes.Contains(b, []byte(podCIDRv6Placeholder)) {
		return list, nil
	}
	var v4, v6 string
	for _, c := range cidrs {
		ip, _, err := net.ParseCIDR(c)
		switch {
		case err != nil:
		case ip.To4() != nil && v4 == "":
			v4 = c
		case ip.To4() == nil && v6 == "":
			v6 = c
		}
	}
	for _, r := range []struct{ placeholder, cidr string }{{podCIDRPlaceholder, v4}, {podCIDRv6Placeholder, v6}} {
		if !bytes.Contains(b, []byte(r.placeholder)) {
			continue
		}
		if r.cidr == "" {
			return nil, errNoPodCIDR
		}
		b = bytes.ReplaceAll(b, []byte(r.placeholder), []byte(strconv.Quote(r.cidr)))
	}
	return libcni.ConfListFromBytes(b)
}

// ParsePodCIDRs splits the kubelet's pod CIDR field ("10.1.0.0/24" or a
// comma-separated dual-stack pair) and checks each part.
func ParsePodCIDRs(s string) ([]string, error) {
	var out []string
	for _, c := range strings.Split(s, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if _, _, err := net.ParseCIDR(c); err != nil {
			return nil, fmt.Errorf("pod CIDR %q: %w", c, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// confRecheck bounds how often the conf dir is looked at: Status and every
// Setup ask, and a couple of seconds of staleness is what kubelet tolerates.
const confRecheck = 500 * time.Millisecond
