package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/pod-shim/pod-shim/pkg/config"
	"github.com/pod-shim/pod-shim/pkg/image"
	"github.com/pod-shim/pod-shim/pkg/unixsock"
)

// adminSocket, under the state dir, serves what CRI has no RPC for: image
// import for offline nodes. It is root-only (0600).
const adminSocket = "admin.sock"

type importedImage struct {
	ID       string   `json:"id"`
	RepoTags []string `json:"repoTags"`
}

func startAdmin(path string, images *image.Store, log *slog.Logger) (*httpServer, error) {
	lis, err := unixsock.Listen(path, 0o600)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /images/import", func(w http.ResponseWriter, r *http.Request) {
		imgs, err := images.Import(r.Context(), r.Body)
		if err != nil {
			log.Warn("image import failed", "error", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		out := make([]importedImage, 0, len(imgs))
		for _, img := range imgs {
			out = append(out, importedImage{ID: img.ID, RepoTags: img.RepoTags})
			log.Info("image imported", "image", img.ID, "tags", img.RepoTags)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server", "error", err)
		}
	}()
	return &httpServer{srv: srv}, nil
}

func imagesCmd(args []string) int {
	if len(args) == 0 || args[0] != "import" {
		fmt.Fprintln(os.Stderr, "usage: pod-shim images import [--state DIR] FILE|-")
		return 2
	}
	fs := flag.NewFlagSet("images import", flag.ContinueOnError)
	state := fs.String("state", config.Default().State, "state dir of the running daemon")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: pod-shim images import [--state DIR] FILE|-")
		return 2
	}
	var in io.Reader = os.Stdin
	if name := fs.Arg(0); name != "-" {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "pod-shim:", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	sock := filepath.Join(*state, adminSocket)
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	resp, err := client.Post("http://pod-shim/images/import", "application/x-tar", in)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pod-shim: is the daemon running with --state %s? %v\n", *state, err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		fmt.Fprintf(os.Stderr, "pod-shim: import failed: %s", msg)
		return 1
	}
	var imgs []importedImage
	if err := json.NewDecoder(resp.Body).Decode(&imgs); err != nil {
		fmt.Fprintln(os.Stderr, "pod-shim:", err)
		return 1
	}
	for _, img := range imgs {
		for _, t := range img.RepoTags {
			fmt.Printf("%s\t%s\n", t, img.ID)
		}
		if len(img.RepoTags) == 0 {
			fmt.Printf("<none>\t%s\n", img.ID)
		}
	}
	return 0
}

func configCmd(args []string) int {
	if len(args) != 1 || args[0] != "default" {
		fmt.Fprintln(os.Stderr, "usage: pod-shim config default")
		return 2
	}
	data, err := config.Default().Marshal()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pod-shim:", err)
		return 1
	}
	os.Stdout.Write(data)
	return 0
}
