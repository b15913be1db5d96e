package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pod-shim/pod-shim/test/harness"
	"github.com/pod-shim/pod-shim/test/images"
)

// TestImagesImport loads docker-save archives written by the harness with
// `pod-shim images import`, from a file and from stdin, as an offline machine
// would, and checks crictl then lists them with the image's config digest as id.
func TestImagesImport(t *testing.T) {
	requireHost(t)
	d := startDaemon(t)
	img, err := images.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	cfgDigest, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, tag string
		stdin     bool
	}{
		{"file", images.ArchiveTag, false},
		{"stdin", "localhost/pod-shim-test/busybox:stdin-" + harness.RandHex(3), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			archive := filepath.Join(d.Base, "import-"+tc.name+".tar")
			if err := images.WriteArchive(archive, tc.tag, img); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			arg := archive
			if tc.stdin {
				arg = "-"
			}
			cmd := exec.CommandContext(ctx, d.Bin, "images", "import", "--state", d.State, arg)
			if tc.stdin {
				f, err := os.Open(archive)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				cmd.Stdin = f
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("pod-shim images import --state %s %s: %v\nstdout: %s\nstderr: %s", d.State, arg, err, out, stderr.String())
			}
			t.Logf("pod-shim images import: %s", strings.TrimSpace(string(out)))

			var list imageListJSON
			d.CrictlJSON(&list, "images", "-o", "json")
			i := slices.IndexFunc(list.Images, func(im imageJSON) bool { return slices.Contains(im.RepoTags, tc.tag) })
			if i < 0 {
				t.Fatalf("crictl images does not list %s after import: %+v", tc.tag, list.Images)
			}
			var st imageStatusJSON
			d.CrictlJSON(&st, "inspecti", "-o", "json", tc.tag)
			if st.Status.ID != cfgDigest.String() {
				t.Errorf("crictl inspecti %s: id %s, want the config digest %s", tc.tag, st.Status.ID, cfgDigest)
			}
		})
	}
}
