package network

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

// statusVersion is the CNI spec version that introduced STATUS.
const statusVersion = "1.1.0"

// statusRecheck bounds how often the plugins are asked STATUS: every
// answer costs a process per plugin, and the kubelet, crictl and monitoring
// all call Status. A plugin turning ready shows within this much.
const statusRecheck = 2 * time.Second

// statusTimeout bounds one round of VERSION and STATUS calls, so a hung
// plugin makes the network not ready instead of hanging the Status RPC.
const statusTimeout = 10 * time.Second

// pluginHealth caches the last STATUS answer and each plugin binary's
// supported versions (a VERSION call per binary, redone when it changes).
type pluginHealth struct {
	mu       sync.Mutex
	stamp    string // conf set the answer is for
	at       time.Time
	err      error
	versions map[string]pluginVersions // by binary path
}

type pluginVersions struct {
	size      int64
	mtime     time.Time
	supported []string
}

// Status reports whether pods can be networked. reason is the CRI
// condition reason kubelet expects when not ready.
func (m *Manager) Status() (ready bool, reason, message string) {
	cs := m.config()
	if cs.def == nil {
		return false, "NetworkPluginNotReady", cs.problem
	}
	// A config naming a plugin that isn't installed can't network a pod,
	// and saying so here is clearer than a failed pod.
	paths := make([]string, len(cs.def.Plugins))
	for i, p := range cs.def.Plugins {
		path, err := invoke.FindInPath(p.Network.Type, m.opts.BinDirs)
		if err != nil {
			return false, "NetworkPluginNotReady", fmt.Sprintf("network %q (%s): plugin %q not found in %v",
				cs.def.Name, cs.defFile, p.Network.Type, m.opts.BinDirs)
		}
		paths[i] = path
	}
	if err := m.pluginStatus(cs, paths); err != nil {
		return false, "NetworkPluginNotReady", fmt.Sprintf("network %q (%s): %v", cs.def.Name, cs.defFile, err)
	}
	return true, "", ""
}

// pluginStatus asks each plugin of a CNI 1.1+ network whether it can take
// an ADD (STATUS), as containerd and CRI-O do through libcni. Configs of
// older versions have no STATUS and are never asked.
func (m *Manager) pluginStatus(cs *confSet, paths []string) error {
	list := cs.def
	if ok, err := version.GreaterThanOrEqualTo(list.CNIVersion, statusVersion); err != nil || !ok {
		return nil
	}
	h := &m.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stamp == cs.stamp && time.Since(h.at) < statusRecheck {
		return h.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(statusTimeout, m.opts.Timeout))
	defer cancel()
	err := m.askStatus(ctx, list, paths)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (status timeout %v): %w", ctx.Err(), min(statusTimeout, m.opts.Timeout), err)
	}
	if err != nil && (h.err == nil || h.err.Error() != err.Error()) {
		m.log.Warn("network plugin not ready", "network", list.Name, "error", err)
	}
	h.stamp, h.at, h.err = cs.stamp, time.Now(), err
	return err
}

// askStatus runs STATUS plugin by plugin. libcni would send STATUS to every
// plugin of a 1.1 list, but a plugin built before CNI 1.1 (Debian's 1.1.1
// plugins speak up to 1.0.0) takes it for a malformed ADD and answers
// "missing containerID"; such a plugin also refuses the list's ADD as
// "incompatible CNI versions", so that is what is reported, without asking.
func (m *Manager) askStatus(ctx context.Context, list *libcni.NetworkConfigList, paths []string) error {
	for i, p := range list.Plugins {
		supported, err := m.pluginVersions(ctx, p.Network.Type, paths[i])
		if err != nil {
			return fmt.Errorf("plugin %q: version: %w", p.Network.Type, err)
		}
		if !slices.Contains(supported, list.CNIVersion) {
			return fmt.Errorf("plugin %q (%s) supports CNI versions %s, not the config's %s",
				p.Network.Type, paths[i], strings.Join(supported, ", "), list.CNIVersion)
		}
		one := *list
		one.Plugins = []*libcni.PluginConfig{p}
		if err := m.cni.GetStatusNetworkList(ctx, &one); err != nil {
			return fmt.Errorf("plugin %q reports not ready (CNI STATUS): %w", p.Network.Type, err)
		}
	}
	return nil
}

// pluginVersions returns the CNI versions a plugin binary speaks, asking it
// (VERSION) only when the binary is new or was replaced. The caller holds
// m.health.mu.
func (m *Manager) pluginVersions(ctx context.Context, typ, path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	h := &m.health
	if v, ok := h.versions[path]; ok && v.size == fi.Size() && v.mtime.Equal(fi.ModTime()) {
		return v.supported, nil
	}
	info, err := m.cni.GetVersionInfo(ctx, typ)
	if err != nil {
		return nil, err
	}
	if h.versions == nil {
		h.versions = map[string]pluginVersions{}
	}
	supported := info.SupportedVersions()
	h.versions[path] = pluginVersions{size: fi.Size(), mtime: fi.ModTime(), supported: supported}
	return supported, nil
}
