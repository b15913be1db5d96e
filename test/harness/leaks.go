package harness

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// RecordNetns remembers the network namespaces (by inode) of every container
// running under the daemon's runc root, the pause containers included, so the
// leftover checks find a pinned netns by identity whatever it is named. It
// fails if the given containers are not among them or share the host's netns.
func (d *Daemon) RecordNetns(containerIDs ...string) {
	d.T.Helper()
	list, err := d.RuncList()
	if err != nil {
		d.T.Fatal(err)
	}
	var host unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &host); err != nil {
		d.T.Fatal(err)
	}
	byID := map[string]uint64{}
	for _, c := range list {
		if c.Pid <= 0 || c.Status != "running" {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", c.Pid), &st); err != nil {
			continue
		}
		byID[c.ID] = st.Ino
	}
	for _, id := range containerIDs {
		ino, ok := byID[id]
		if !ok {
			d.T.Fatalf("container %s is not running under runc root %s (runc list: %+v)", id, d.RuncRoot(), list)
		}
		if ino == host.Ino {
			d.T.Fatalf("container %s runs in the host's network namespace", id)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ino := range byID {
		if ino != host.Ino {
			d.netnsInos[ino] = true
		}
	}
}

// RecordedNetns is how many pod network namespaces RecordNetns has seen.
func (d *Daemon) RecordedNetns() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.netnsInos)
}

// RuncRoot is the daemon's runc --root.
func (d *Daemon) RuncRoot() string { return filepath.Join(d.State, "runc") }

// RuncContainers are the ids RuncList finds (none if runc fails).
func (d *Daemon) RuncContainers() []string {
	list, err := d.RuncList()
	if err != nil {
		d.T.Logf("%v", err)
	}
	var ids []string
	for _, c := range list {
		ids = append(ids, c.ID)
	}
	return ids
}

// MountInfo is this process's mount table (moby/sys/mountinfo: paths
// unescaped, one set of parsing rules for every suite); nil if unreadable.
func MountInfo() []*mountinfo.Info {
	m, _ := mountinfo.GetMounts(nil)
	return m
}

// MountsUnder lists mount points at or below dir, deepest first.
func MountsUnder(dir string) []string {
	ms, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(filepath.Clean(dir)))
	var out []string
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// NsfsMountsOf lists mounts pinning one of the given network namespaces.
func NsfsMountsOf(inos map[uint64]bool) []string {
	ms, _ := mountinfo.GetMounts(mountinfo.FSTypeFilter("nsfs"))
	var out []string
	for _, m := range ms {
		var ino uint64
		if _, err := fmt.Sscanf(m.Root, "net:[%d]", &ino); err == nil && inos[ino] {
			out = append(out, m.Mountpoint)
		}
	}
	return out
}

// Proc is a process of the host other than the test itself.
type Proc struct {
	Pid     int
	Args    []string // NUL-split cmdline
	Cmdline string   // Args joined with spaces
	Exe     string
}

// Processes lists the host's processes but the test's own.
func Processes() []Proc {
	ents, _ := os.ReadDir("/proc")
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		out = append(out, Proc{
			Pid:     pid,
			Args:    strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"),
			Cmdline: strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " ")),
			Exe:     strings.TrimSuffix(exe, " (deleted)"),
		})
	}
	return out
}

// Monitors lists the pod monitor processes of this daemon: `pod-shim
// monitor` or pod-shim-monitor processes started from this test's binaries
// or naming its dirs or one of its pods.
func (d *Daemon) Monitors() []Proc {
	daemon := d.Pid()
	d.mu.Lock()
	ids := make([]string, 0, len(d.podIDs))
	for id := range d.podIDs {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	var out []Proc
	for _, p := range Processes() {
		if p.Pid == daemon {
			continue
		}
		ours := p.Exe == d.Bin || strings.Contains(p.Cmdline, d.State) || strings.Contains(p.Cmdline, d.Base)
		for _, id := range ids {
			if strings.Contains(p.Cmdline, id) {
				ours = true
			}
		}
		if ours && strings.Contains(p.Cmdline, "pod-shim") && strings.Contains(p.Cmdline, "monitor") {
			out = append(out, p)
		}
	}
	return out
}

// KillPods SIGKILLs every process of the daemon's pods: containers and
// pause (through runc's state) and monitors, as a host reboot would.
func (d *Daemon) KillPods() {
	for _, id := range d.RuncContainers() {
		out, err := exec.Command("runc", "--root", d.RuncRoot(), "state", id).Output()
		if err != nil {
			continue
		}
		var st struct{ Pid int }
		if json.Unmarshal(out, &st) == nil && st.Pid > 0 {
			syscall.Kill(st.Pid, syscall.SIGKILL)
		}
	}
	for _, p := range d.Monitors() {
		syscall.Kill(p.Pid, syscall.SIGKILL)
	}
}

func dirNames(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// NetnsFiles lists the pinned netns files in the daemon's state dir.
func (d *Daemon) NetnsFiles() []string { return dirNames(filepath.Join(d.State, "netns")) }

// PodDirs lists the pod dirs in the daemon's state dir.
func (d *Daemon) PodDirs() []string { return dirNames(filepath.Join(d.State, "pods")) }

// VethsOnBridge lists interfaces enslaved to the daemon's bridge.
func (d *Daemon) VethsOnBridge() []string {
	out, err := exec.Command("ip", "-o", "link", "show", "master", d.Bridge).Output()
	if err != nil {
		return nil // no bridge, no veths on it
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			names = append(names, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	return names
}

// IPAMAllocations lists host-local allocation files (named by IP) of the daemon's network.
func (d *Daemon) IPAMAllocations() []string {
	var out []string
	for _, name := range dirNames(filepath.Join(d.IPAMDir, d.NetName)) {
		if net.ParseIP(name) != nil {
			out = append(out, name)
		}
	}
	return out
}

func (d *Daemon) cniResultCache() []string {
	m, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", d.NetName+"-*"))
	return m
}

// Leftovers reports everything of the test's pods still on the host:
// pinned network namespaces, netns files, pod dirs, mounts, veths, runc
// containers, monitors, host-local allocations, CNI result cache and what
// Options.Leftovers adds.
func (d *Daemon) Leftovers() []string {
	var problems []string
	d.mu.Lock()
	inos := map[uint64]bool{}
	for k := range d.netnsInos {
		inos[k] = true
	}
	var ids []string
	for k := range d.podIDs {
		ids = append(ids, k)
	}
	d.mu.Unlock()

	if m := NsfsMountsOf(inos); len(inos) > 0 && len(m) > 0 {
		problems = append(problems, fmt.Sprintf("network namespaces still pinned at %v", m))
	}
	if f := d.NetnsFiles(); len(f) > 0 {
		problems = append(problems, fmt.Sprintf("netns files left: %v", f))
	}
	filepath.WalkDir(d.State, func(p string, e os.DirEntry, err error) error {
		if err == nil && strings.Contains(strings.ToLower(filepath.Base(p)), "netns") && !e.IsDir() {
			problems = append(problems, "netns file left in the state dir: "+p)
		}
		return nil
	})
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			name := strings.Fields(line + " x")[0]
			for _, id := range ids {
				if len(name) >= 12 && strings.Contains(id, name) || strings.Contains(name, id[:12]) {
					problems = append(problems, "ip netns still lists "+name)
				}
			}
		}
	}
	if f := d.PodDirs(); len(f) > 0 {
		problems = append(problems, fmt.Sprintf("pod dirs left: %v", f))
	}
	if m := MountsUnder(d.Base); len(m) > 0 {
		problems = append(problems, fmt.Sprintf("mounts left under %s: %v", d.Base, m))
	}
	if v := d.VethsOnBridge(); len(v) > 0 {
		problems = append(problems, fmt.Sprintf("veths left on bridge %s: %v", d.Bridge, v))
	}
	if list, err := d.RuncList(); err != nil {
		problems = append(problems, err.Error())
	} else if len(list) > 0 {
		problems = append(problems, fmt.Sprintf("runc containers left: %+v", list))
	}
	if m := d.Monitors(); len(m) > 0 {
		problems = append(problems, fmt.Sprintf("monitor processes left: %+v", m))
	}
	if a := d.IPAMAllocations(); len(a) > 0 {
		problems = append(problems, fmt.Sprintf("host-local IP allocations left in %s: %v", filepath.Join(d.IPAMDir, d.NetName), a))
	}
	if m := d.cniResultCache(); len(m) > 0 {
		problems = append(problems, fmt.Sprintf("CNI result cache left: %v", m))
	}
	if d.Opts.Leftovers != nil {
		problems = append(problems, d.Opts.Leftovers(d)...)
	}
	return problems
}

// SettledLeftovers is Leftovers once what goes away asynchronously has had
// its time: a pod's monitor exits after answering Shutdown, and veths go
// with their namespace. It polls until nothing is left or 15 s passed (the
// bound only stops a hang) and returns what is still there.
func (d *Daemon) SettledLeftovers() []string {
	var problems []string
	deadline := time.Now().Add(15 * time.Second)
	for {
		problems = d.Leftovers()
		if len(problems) == 0 || time.Now().After(deadline) {
			return problems
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// NoLeftovers fails the test if anything of its pods is left (see
// SettledLeftovers).
func (d *Daemon) NoLeftovers() {
	d.T.Helper()
	for _, p := range d.SettledLeftovers() {
		d.T.Error(p)
	}
}
