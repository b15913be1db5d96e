package streaming

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// cannotHere are the RPCs that truly cannot be done on this host: CRIU,
// which checkpoint and restore need, fails `criu check` on this kernel
// (see /work/shared/TESTING.md). They must answer Unimplemented, not fail
// in some other way or pretend to work.
var cannotHere = map[string]bool{"CheckpointContainer": true, "CheckpointPod": true, "RestorePod": true}

// TestEveryRPCImplemented lists the RuntimeService and ImageService client
// methods by reflection and calls each with an empty request: none may
// answer Unimplemented (bad input is fine), except checkpoint/restore,
// which must.
func TestEveryRPCImplemented(t *testing.T) {
	requireHost(t)
	d := startDaemon(t)
	rs, is := d.Client()
	for _, client := range []any{rs, is} {
		v := reflect.ValueOf(client)
		for i := range v.NumMethod() {
			name := v.Type().Method(i).Name
			mt := v.Method(i).Type()
			t.Run(name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				req := reflect.New(mt.In(1).Elem())
				out := v.Method(i).Call([]reflect.Value{reflect.ValueOf(ctx), req})
				err, _ := out[1].Interface().(error)
				if err == nil && out[0].Type().Kind() == reflect.Interface {
					// A stream: its first message or error tells.
					recv := out[0].MethodByName("Recv").Call(nil)
					err, _ = recv[1].Interface().(error)
					if status.Code(err) == codes.DeadlineExceeded {
						err = nil // a subscription that waits for events
					}
				}
				switch {
				case cannotHere[name] && (status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "CRIU")):
					t.Errorf("%s: %v, want Unimplemented saying CRIU is the reason", name, err)
				case cannotHere[name]:
					t.Logf("%s: %v", name, err)
				case status.Code(err) == codes.Unimplemented:
					t.Errorf("%s: %v", name, err)
				}
			})
		}
	}
}
