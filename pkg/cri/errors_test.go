package cri

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pod-shim/pod-shim/pkg/container"
	"github.com/pod-shim/pod-shim/pkg/image"
	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/network"
	"github.com/pod-shim/pod-shim/pkg/runc"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
	"github.com/pod-shim/pod-shim/pkg/store"
	"github.com/pod-shim/pod-shim/pkg/streaming"
)

// sentinelCodes is every sentinel error the domain packages export, by
// "package.Name", with the code a client must see for it.
var sentinelCodes = map[string]struct {
	err  error
	code codes.Code
}{
	"sandbox.ErrNotFound":          {sandbox.ErrNotFound, codes.NotFound},
	"sandbox.ErrAlreadyExists":     {sandbox.ErrAlreadyExists, codes.AlreadyExists},
	"sandbox.ErrInvalid":           {sandbox.ErrInvalid, codes.InvalidArgument},
	"sandbox.ErrNotReady":          {sandbox.ErrNotReady, codes.FailedPrecondition},
	"container.ErrNotFound":        {container.ErrNotFound, codes.NotFound},
	"container.ErrAlreadyExists":   {container.ErrAlreadyExists, codes.AlreadyExists},
	"container.ErrInvalid":         {container.ErrInvalid, codes.InvalidArgument},
	"container.ErrState":           {container.ErrState, codes.FailedPrecondition},
	"image.ErrNotFound":            {image.ErrNotFound, codes.NotFound},
	"image.ErrLimit":               {image.ErrLimit, codes.ResourceExhausted},
	"image.ErrInvalidReference":    {image.ErrInvalidReference, codes.InvalidArgument},
	"store.ErrNotFound":            {store.ErrNotFound, codes.NotFound},
	"store.ErrAmbiguous":           {store.ErrAmbiguous, codes.InvalidArgument},
	"network.ErrInvalidPod":        {network.ErrInvalidPod, codes.InvalidArgument},
	"network.ErrNotReady":          {network.ErrNotReady, codes.FailedPrecondition},
	"monitor.ErrNotFound":          {monitor.ErrNotFound, codes.NotFound},
	"monitor.ErrNotRunning":        {monitor.ErrNotRunning, codes.FailedPrecondition},
	"monitor.ErrExecTimeout":       {monitor.ErrExecTimeout, codes.DeadlineExceeded},
	"runc.ErrNotFound":             {runc.ErrNotFound, codes.NotFound},
	"runc.ErrNotRunning":           {runc.ErrNotRunning, codes.FailedPrecondition},
	"runc.ErrUnknownHandler":       {runc.ErrUnknownHandler, codes.InvalidArgument},
	"runc.ErrUnsupported":          {runc.ErrUnsupported, codes.Unimplemented},
	"streaming.ErrUnsupported":     {streaming.ErrUnsupported, codes.Unimplemented},
	"context.DeadlineExceeded":     {context.DeadlineExceeded, codes.DeadlineExceeded},
	"context.Canceled":             {context.Canceled, codes.Canceled},
	"unknown (no sentinel at all)": {errors.New("disk on fire"), codes.Unknown},
}

func TestErrorCodes(t *testing.T) {
	for name, tt := range sentinelCodes {
		t.Run(name, func(t *testing.T) {
			// Domain errors reach the edge wrapped, sometimes twice.
			err := fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", tt.err))
			got := status.Code(toStatus(err))
			if got != tt.code {
				t.Fatalf("%s maps to %s, want %s", name, got, tt.code)
			}
		})
	}
	t.Run("a status passes through", func(t *testing.T) {
		in := status.Error(codes.ResourceExhausted, "full")
		if got := toStatus(in); status.Code(got) != codes.ResourceExhausted {
			t.Fatalf("got %v", got)
		}
	})
}

// TestEveryDomainSentinelHasACode reads the domain packages' sources for
// exported Err* variables, so that a sentinel added later cannot fall
// through to Unknown unnoticed: it must be listed above, with its code,
// and mapped in errorCodes.
func TestEveryDomainSentinelHasACode(t *testing.T) {
	dirs, err := os.ReadDir("..")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, d := range dirs {
		if !d.IsDir() || d.Name() == "cri" {
			continue
		}
		fset := token.NewFileSet()
		files, _ := filepath.Glob(filepath.Join("..", d.Name(), "*.go"))
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, decl := range f.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.VAR {
					continue
				}
				for _, spec := range gd.Specs {
					for _, n := range spec.(*ast.ValueSpec).Names {
						if !n.IsExported() || !strings.HasPrefix(n.Name, "Err") {
							continue
						}
						found++
						name := f.Name.Name + "." + n.Name
						if _, ok := sentinelCodes[name]; !ok {
							t.Errorf("%s (%s) has no gRPC code: add it to errorCodes in server.go and to sentinelCodes here", name, fset.Position(n.Pos()))
						}
					}
				}
			}
		}
	}
	if found < 20 {
		t.Fatalf("found only %d sentinels: is the package walk broken?", found)
	}
}
