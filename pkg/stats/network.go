package stats

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Interface is one network device's counters.
type Interface struct {
	Name                                 string
	RxBytes, RxErrors, TxBytes, TxErrors uint64
	RxPackets, RxDropped                 uint64
	TxPackets, TxDropped                 uint64
}

// NetNS reads the interface counters of the network namespace pinned at
// path, loopback excluded. It switches one locked OS thread into the
// namespace for the read of /proc/thread-self/net/dev, so nothing forks.
func NetNS(path string) ([]Interface, error) {
	target, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	type result struct {
		data []byte
		err  error
	}
	ch := make(chan result, 1)
	// A fresh goroutine whose thread is thrown away if it cannot go home:
	// the Go runtime never reuses a thread left locked at goroutine exit.
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("enter netns %s: %w", path, err)}
			return
		}
		data, rerr := os.ReadFile("/proc/thread-self/net/dev")
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{data: data, err: rerr}
	}()
	r := <-ch
	if r.err != nil {
		return nil, r.err
	}
	return ParseNetDev(r.data), nil
}

// ParseNetDev parses /proc/net/dev, skipping lo.
func ParseNetDev(data []byte) []Interface {
	var out []Interface
	for i, line := range bytes.Split(data, []byte("\n")) {
		if i < 2 {
			continue // two header lines
		}
		name, rest, ok := strings.Cut(string(line), ":")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		if name == "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 16 {
			continue
		}
		n := func(i int) uint64 { v, _ := strconv.ParseUint(f[i], 10, 64); return v }
		out = append(out, Interface{Name: name,
			RxBytes: n(0), RxPackets: n(1), RxErrors: n(2), RxDropped: n(3),
			TxBytes: n(8), TxPackets: n(9), TxErrors: n(10), TxDropped: n(11)})
	}
	return out
}
