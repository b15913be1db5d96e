package streaming

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	goruntime "runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// dialTimeout bounds the connect to the pod's port.
const dialTimeout = 10 * time.Second

// PortForward connects stream to port on the pod's localhost: IPv4 first,
// then IPv6, as kubectl users expect of a server bound to either.
func (r *runtime) PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) error {
	r.wg.Add(1)
	defer r.wg.Done()
	defer stream.Close()
	sb, err := r.sandboxes.Get(podSandboxID)
	if err != nil {
		return err
	}
	if port <= 0 || port > 65535 {
		return fmt.Errorf("port %d out of range", port)
	}
	netns, err := dialTarget(sb)
	if err != nil {
		return fmt.Errorf("port-forward to pod %s port %d: %w", sb.ID, port, err)
	}
	var conn net.Conn
	if netns == "" {
		conn, err = dialLocal(ctx, int(port))
	} else {
		conn, err = dialInNetNS(ctx, netns, int(port))
	}
	if err != nil {
		return fmt.Errorf("port-forward to pod %s port %d: %w", sb.ID, port, err)
	}
	defer conn.Close()

	errc := make(chan error, 2)
	go func() {
		_, err := io.Copy(conn, stream)
		// The client finished sending: pass the half-close on.
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		errc <- err
	}()
	go func() {
		_, err := io.Copy(stream, conn)
		errc <- err
	}()
	// Either side ending ends the session: the pod closed, or the client.
	select {
	case err = <-errc:
	case <-ctx.Done():
		err = ctx.Err()
	}
	conn.Close()
	stream.Close()
	<-errc
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

// dialTarget is the network namespace a port-forward to sb dials in, or ""
// for the host's. Only a ready pod is dialled, and only a host-network pod
// reaches the host: a pod that is not ready (stopped, its netns gone or
// going) is refused rather than dialled on the host, where its port may be
// someone else's service.
func dialTarget(sb *sandbox.Sandbox) (string, error) {
	if sb.State != sandbox.StateReady {
		return "", fmt.Errorf("pod is %s: %w", sb.State, sandbox.ErrNotReady)
	}
	if sb.HostNetwork() {
		return "", nil
	}
	if sb.NetNSPath == "" {
		return "", fmt.Errorf("pod has no network namespace: %w", sandbox.ErrNotReady)
	}
	return sb.NetNSPath, nil
}

func dialLocal(ctx context.Context, port int) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err4 := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err4 == nil {
		return conn, nil
	}
	conn, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", strconv.Itoa(port)))
	if err6 == nil {
		return conn, nil
	}
	return nil, errors.Join(err4, err6)
}

// dialInNetNS connects from inside the pod's network namespace. The socket
// is created on a thread switched into the netns and belongs to it for
// life; the thread then switches back (or is discarded if it cannot), so no
// other goroutine ever runs in the pod's namespace.
func dialInNetNS(ctx context.Context, nsPath string, port int) (net.Conn, error) {
	ns, err := os.Open(nsPath)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		goruntime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			goruntime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			goruntime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("enter netns: %w", err)}
			return
		}
		// The dial must not hop threads: net.Dialer's blocking connect
		// runs in the poller, but the socket(2) call happens here, on
		// this locked thread, which is what fixes its namespace.
		conn, err := dialLocal(ctx, port)
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			goruntime.UnlockOSThread()
		}
		ch <- result{conn: conn, err: err}
	}()
	r := <-ch
	wg.Wait()
	return r.conn, r.err
}
