package monitor

import (
	"net"
	"testing"
	"time"
)

// The newline json.Encoder writes after a request can arrive after the
// decoder has taken the request. The handler must not take it for the
// client hanging up: that cancelled Creates (and SIGKILLed their runc)
// whenever the kubelet's larger requests spanned two reads.
func TestTrailingNewlineIsNotAHangUp(t *testing.T) {
	p := newPod(t)
	id := newID()
	p.run(id, "", true, "sleep", "60")

	conn, err := net.Dial("unix", SocketPath(p.dir))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Wait blocks until the container exits or the handler is cancelled.
	if _, err := conn.Write([]byte(`{"method":"Wait","params":{"id":"` + id + `"}}`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the decoder has the request by now
	if _, err := conn.Write([]byte("\n")); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(time.Second))
	var b [512]byte
	n, err := conn.Read(b[:])
	if err == nil {
		t.Fatalf("Wait answered %q after a trailing newline: the handler was cancelled as if the client had hung up", b[:n])
	}
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("read: %v, want a timeout (Wait still blocked)", err)
	}
}
