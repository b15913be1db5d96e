// Command standin is one small static binary that plays the programs critest's
// images run, so the conformance images can be built offline from the host's
// busybox-static (see ../images). It dispatches on the name it is run as:
//
//	ipcs     `ipcs [-m]`: System V shared memory segments of this IPC namespace
//	         (Debian's busybox-static lacks the applet)
//	pgrep    `pgrep PATTERN`: pids whose process name matches (also missing)
//	nginx    an nginx-alike: re-execs itself so /proc/self/cmdline reads
//	         "nginx: master process ...", writes /var/run/nginx.pid and serves
//	         HTTP on the port of the first `listen N;` in
//	         /etc/nginx/conf.d/default.conf (default 80)
//	httpd    an httpd-alike on :80 that logs a line naming itself
//	nnp      prints "Effective uid: N" (installed setuid root, for NoNewPrivs)
//
// Built with CGO_ENABLED=0 so it runs in any image.
package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// masterTitle is what nginx's master process shows as its command line;
// critest greps /proc/1/cmdline for "master process".
const masterTitle = "nginx: master process nginx -g daemon off;"

func main() {
	name := filepath.Base(os.Args[0])
	if strings.HasPrefix(os.Args[0], "nginx:") {
		name = "nginx"
	}
	var err error
	switch name {
	case "ipcs":
		err = ipcs(os.Args[1:])
	case "pgrep":
		err = pgrep(os.Args[1:])
	case "nginx":
		err = nginx()
	case "httpd":
		err = httpd()
	case "nnp":
		fmt.Printf("Effective uid: %d\n", os.Geteuid())
	default:
		err = fmt.Errorf("unknown applet %q (ipcs, pgrep, nginx, httpd, nnp)", name)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// ipcs prints the shared memory table in util-linux's layout. /proc/sysvipc/shm
// lists the segments of the reader's IPC namespace, which is what the host-IPC
// specs check.
func ipcs(args []string) error {
	for _, a := range args {
		if a != "-m" && a != "-a" {
			return fmt.Errorf("unsupported option %q (only -m)", a)
		}
	}
	f, err := os.Open("/proc/sysvipc/shm")
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Printf("\n------ Shared Memory Segments --------\n")
	fmt.Printf("%-10s %-10s %-10s %-10s %-10s %-10s %-12s\n", "key", "shmid", "owner", "perms", "bytes", "nattch", "status")
	sc := bufio.NewScanner(f)
	first := true
	for sc.Scan() {
		if first { // header line
			first = false
			continue
		}
		// key shmid perms size cpid lpid nattch uid gid cuid cgid ...
		fl := strings.Fields(sc.Text())
		if len(fl) < 8 {
			continue
		}
		key, _ := strconv.ParseInt(fl[0], 10, 64)
		perms, _ := strconv.ParseInt(fl[2], 10, 64)
		fmt.Printf("0x%08x %-10s %-10s %-10o %-10s %-10s %-12s\n", uint32(key), fl[1], fl[7], perms&0o777, fl[3], fl[6], "")
	}
	fmt.Println()
	return sc.Err()
}

// pgrep prints the pid of every process whose name (comm) matches the
// pattern, as busybox and procps do, never its own.
func pgrep(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: pgrep PATTERN")
	}
	re, err := regexp.Compile(args[0])
	if err != nil {
		return err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	var pids []int
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil {
			continue
		}
		if re.MatchString(strings.TrimSpace(string(comm))) {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	for _, p := range pids {
		fmt.Println(p)
	}
	if len(pids) == 0 {
		os.Exit(1)
	}
	return nil
}

func nginx() error {
	if os.Args[0] != masterTitle {
		// Re-exec in place (same pid) under the master's title. Exec the
		// path we were started by (the nginx link), not the resolved
		// binary: the kernel names the process (comm) after that file, and
		// critest's `pidof nginx` looks for "nginx".
		exe, err := exec.LookPath(os.Args[0])
		if err != nil {
			return err
		}
		return syscall.Exec(exe, append([]string{masterTitle}, os.Args[1:]...), os.Environ())
	}
	port := "80"
	if b, err := os.ReadFile("/etc/nginx/conf.d/default.conf"); err == nil {
		if m := regexp.MustCompile(`(?m)^\s*listen\s+(\d+)\s*;`).FindSubmatch(b); m != nil {
			port = string(m[1])
		}
	}
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		return err
	}
	if err := os.MkdirAll("/var/run", 0o755); err != nil {
		return err
	}
	if err := os.WriteFile("/var/run/nginx.pid", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "nginx stand-in: listening on :%s\n", port)
	return http.Serve(ln, page("<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head><body><h1>Welcome to nginx!</h1></body></html>\n"))
}

func httpd() error {
	ln, err := net.Listen("tcp", ":80")
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "httpd stand-in: httpd listening on :80")
	return http.Serve(ln, page("<html><body><h1>It works!</h1></body></html>\n"))
}

func page(body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, body)
	})
}
