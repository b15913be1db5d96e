package harness

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// RuncContainer is one entry of `runc list --format json`.
type RuncContainer struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
}

// runcListRace is how runc before 1.2 (Debian 12's runc 1.1.5, which .ci/run
// installs) fails a whole `runc list` when a container it is listing is
// deleted meanwhile: it reads the root dir, then stat()s each entry and
// exits 1 on ENOENT ("stat <root>/<id>: no such file or directory") instead
// of skipping it as runc 1.2+ does. Any `runc delete` of the daemon's (the
// kubelet removing a dead attempt, a pod being stopped) can land in that
// window, so this one failure is retried; every other failure is reported.
var runcListRace = regexp.MustCompile(`stat (\S+): no such file or directory`)

// RuncList lists what runc knows under the daemon's runc root.
func (d *Daemon) RuncList() ([]RuncContainer, error) {
	root := d.RuncRoot()
	if _, err := os.Stat(root); errors.Is(err, os.ErrNotExist) {
		return nil, nil // the daemon has not run a container yet
	}
	for attempt := 1; ; attempt++ {
		var stderr bytes.Buffer
		cmd := exec.Command("runc", "--root", root, "list", "--format", "json")
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			m := runcListRace.FindStringSubmatch(stderr.String())
			if m != nil && filepath.Dir(m[1]) == filepath.Clean(root) && attempt < 20 {
				continue // an entry went between readdir and stat: list again
			}
			return nil, fmt.Errorf("runc --root %s list: %w: %s", root, err, strings.TrimSpace(stderr.String()))
		}
		var list []RuncContainer
		if s := strings.TrimSpace(string(out)); s != "" && s != "null" {
			if err := json.Unmarshal(out, &list); err != nil {
				return nil, fmt.Errorf("runc list output %q: %w", out, err)
			}
		}
		return list, nil
	}
}

// ErrNoRuncContainer is RuncState's answer for an id runc does not know.
var ErrNoRuncContainer = errors.New("no such runc container")

// RuncState is `runc state <id>` under the daemon's runc root: the pid and
// status of one container, read from its own state dir alone, so containers
// that come and go beside it cannot fail it as they can `runc list`.
func (d *Daemon) RuncState(id string) (RuncContainer, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("runc", "--root", d.RuncRoot(), "state", id)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if strings.Contains(stderr.String(), "does not exist") {
			return RuncContainer{}, fmt.Errorf("%s under %s: %w", id, d.RuncRoot(), ErrNoRuncContainer)
		}
		return RuncContainer{}, fmt.Errorf("runc --root %s state %s: %w: %s", d.RuncRoot(), id, err, strings.TrimSpace(stderr.String()))
	}
	var c RuncContainer
	if err := json.Unmarshal(out, &c); err != nil {
		return RuncContainer{}, fmt.Errorf("runc state output %q: %w", out, err)
	}
	return c, nil
}
