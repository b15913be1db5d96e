package monitor

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const cgroupRoot = "/sys/fs/cgroup"

// oomCounter reads a container's cumulative OOM-kill count from its memory
// cgroup: cgroup v1 memory.oom_control or v2 memory.events, both "oom_kill N".
// Comparing the count at create with the count at exit tells whether the
// kernel OOM-killed something in the container. This is best effort: a kill
// of a child process rather than the init also counts.
type oomCounter struct {
	file string // "" when the cgroup is unknown
}

// oomCounterFor finds pid's memory cgroup from /proc/<pid>/cgroup. A v1
// memory controller line wins over the v2 line on hybrid hosts, since that is
// where memory is accounted there.
func oomCounterFor(pid int) oomCounter {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return oomCounter{}
	}
	var v2 string
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2 = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				return oomCounter{file: filepath.Join(cgroupRoot, "memory", parts[2], "memory.oom_control")}
			}
		}
	}
	if v2 != "" {
		f := filepath.Join(cgroupRoot, v2, "memory.events")
		if _, err := os.Stat(f); err == nil {
			return oomCounter{file: f}
		}
	}
	return oomCounter{}
}

// count returns the oom_kill count, or -1 when it cannot be read.
func (o oomCounter) count() int64 {
	if o.file == "" {
		return -1
	}
	data, err := os.ReadFile(o.file)
	if err != nil {
		return -1
	}
	return parseOOMKill(data)
}

func parseOOMKill(data []byte) int64 {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == "oom_kill" {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// oomCounterForCgroup finds the OOM counter of a container's own cgroup from
// the spec's linux.cgroupsPath (cgroupfs "/parent/id" or systemd
// "slice:prefix:name"), on a v1 memory hierarchy or v2. The cgroup is new
// with the container, so its count starts at zero: reading it needs no live
// pid, and a kill in the first milliseconds still counts.
func oomCounterForCgroup(cgroupsPath string) oomCounter {
	rel := cgroupsPath
	if slice, rest, ok := strings.Cut(cgroupsPath, ":"); ok {
		prefix, name, _ := strings.Cut(rest, ":")
		dir := "/"
		if s, ok := strings.CutSuffix(slice, ".slice"); ok && s != "" && s != "-" {
			var pfx string
			for _, part := range strings.Split(s, "-") {
				dir = filepath.Join(dir, pfx+part+".slice")
				pfx += part + "-"
			}
		}
		rel = filepath.Join(dir, prefix+"-"+name+".scope")
	}
	for _, f := range []string{
		filepath.Join(cgroupRoot, "memory", rel, "memory.oom_control"),
		filepath.Join(cgroupRoot, rel, "memory.events"),
	} {
		if _, err := os.Stat(f); err == nil {
			return oomCounter{file: f}
		}
	}
	return oomCounter{}
}
