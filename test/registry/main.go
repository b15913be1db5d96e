// Command registry serves pod-shim's offline test images for shell-driven
// suites and the demo.
//
//	go run ./test/registry --addr 127.0.0.1:0
//
// prints the registry's address (127.0.0.1:PORT) as the first line of stdout,
// and the pushed references on the following lines, pushes busybox as
// ADDR/busybox:1.36, then serves until killed (SIGTERM/SIGINT).
//
//	go run ./test/registry --write-archive busybox.tar [--tag localhost/pod-shim-test/busybox:1.36] [--pause-binary bin/pod-shim-pause]
//
// writes a docker-save archive for `pod-shim images import` (or `ctr images
// import`) instead, prints the busybox tag and exits. With --pause-binary the
// archive also holds a pause image, for runtimes that need one.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pod-shim/pod-shim/test/images"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "loopback address to listen on")
	archive := flag.String("write-archive", "", "write a docker-save archive of busybox to this file and exit")
	tag := flag.String("tag", images.ArchiveTag, "tag of the image in the archive (with --write-archive)")
	pause := flag.String("pause-binary", "", "also put a pause image made from this static binary in the archive, tagged "+images.PauseTag+" (with --write-archive)")
	flag.Parse()
	if err := run(*addr, *archive, *tag, *pause); err != nil {
		fmt.Fprintln(os.Stderr, "registry:", err)
		os.Exit(1)
	}
}

func run(addr, archive, tag, pauseBinary string) error {
	img, err := images.Busybox()
	if err != nil {
		return err
	}
	if archive != "" {
		byTag := map[string]v1.Image{tag: img}
		if pauseBinary != "" {
			pause, err := images.Pause(pauseBinary)
			if err != nil {
				return err
			}
			byTag[images.PauseTag] = pause
		}
		if err := images.WriteArchives(archive, byTag); err != nil {
			return err
		}
		fmt.Println(tag)
		return nil
	}
	r, err := images.StartRegistry(addr)
	if err != nil {
		return err
	}
	defer r.Close()
	ref, _, err := r.Push(images.BusyboxRepoTag, img)
	if err != nil {
		return err
	}
	fmt.Println(r.Addr)
	fmt.Println(ref)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}
