package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
func loadConfDir(dir, stamp string) *confSet {
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
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", filepath.Base(f), err))
			continue
		}
		if _, dup := cs.networks[list.Name]; dup {
			continue // the lexically first file wins, as for the default
		}
		cs.networks[list.Name] = list
		if cs.def == nil {
			cs.def, cs.defFile = list, f
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
	conf, err := libcni.ConfFromFile(file)
	if err != nil {
		return nil, err
	}
	if conf.Network.Name == "" {
		return nil, errors.New("no network name")
	}
	return libcni.ConfListFromConf(conf)
}

// confRecheck bounds how often the conf dir is looked at: Status and every
// Setup ask, and a couple of seconds of staleness is what kubelet tolerates.
const confRecheck = 500 * time.Millisecond
