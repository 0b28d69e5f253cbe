package forward

import (
	"context"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// TestConnectTimeoutNetDialer: the listener's own dialer, given an IP
// address, gives up after the connect timeout (dialContext's deadline).
func TestConnectTimeoutNetDialer(t *testing.T) {
	checkLeaks(t)
	up := world.NewSilent(t).Addr()
	const timeout = 300 * time.Millisecond
	r := startRelay(t, Config{Upstreams: [][]string{{up}}, ConnectTimeout: timeout})
	// Timed from before the client's connect: the relay's dial starts
	// after it, so the close can come no sooner than the timeout. Timed
	// from after it, a test goroutine that runs late on a busy machine
	// saw the close "early" (221 ms of 300 under go test -race).
	start := time.Now()
	c := r.dial(t, 0)
	expectClosed(t, c, 5*time.Second)
	if took := time.Since(start); took < timeout {
		t.Errorf("closed after %v, before the connect timeout of %v", took, timeout)
	}
	r.logs.Wait(t, `"end":"upstream_unreachable"`, up, "i/o timeout")
	if n := r.Stats().DialFailures.Load(); n != 1 {
		t.Errorf("DialFailures = %d, want 1", n)
	}
}

// TestCloseInterruptsDial: Close does not wait for a pending dial's
// connect timeout.
func TestCloseInterruptsDial(t *testing.T) {
	checkLeaks(t)
	up := world.NewSilent(t).Addr()
	r := listenRelay(t, Config{Upstreams: [][]string{{up}}, ConnectTimeout: time.Minute})
	r.engineOnly() // the front's dial: TestFrontCloseInterruptsDial
	// The listener's own dialer calls Control just before connect(2): the
	// signal that the dial Close must interrupt is under way.
	connecting := make(chan struct{})
	var once sync.Once
	r.netDialer.ControlContext = func(context.Context, string, string, syscall.RawConn) error {
		once.Do(func() { close(connecting) })
		return nil
	}
	r.serve(t)
	c := r.dial(t, 0)
	select {
	case <-connecting:
	case <-time.After(world.WaitLimit):
		t.Fatal("the relay never dialed the upstream")
	}
	closeWithDialPending(t, r, c, up)
	if n := r.Stats().DialFailures.Load(); n != 0 {
		t.Errorf("DialFailures = %d, want 0 (a shutdown is no failure)", n)
	}
}

// TestFrontCloseInterruptsDial: Close does not wait for a connect the
// front has under way either, and the client's line says shutdown.
func TestFrontCloseInterruptsDial(t *testing.T) {
	checkLeaks(t)
	up := world.NewSilent(t).Addr()
	r := listenRelay(t, Config{Upstreams: [][]string{{up}}, ConnectTimeout: time.Minute})
	r.serve(t)
	c := r.dial(t, 0)
	world.Eventually(t, "client accepted", func() bool { return r.Stats().Accepted.Load() == 1 })
	if r.front == nil {
		t.Fatal("the front does not serve a plain tcp listener")
	}
	closeWithDialPending(t, r, c, up)
	if n := r.Stats().Active.Load(); n != 0 {
		t.Errorf("Active = %d after Close", n)
	}
}

// closeWithDialPending closes r while client c's dial of up is under way:
// Close returns long before the connect timeout, c is closed and its
// access line says shutdown.
func closeWithDialPending(t *testing.T, r *relay, c net.Conn, up string) {
	t.Helper()
	start := time.Now()
	r.Close()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close took %v with a dial pending", took)
	}
	expectClosed(t, c, 5*time.Second)
	r.logs.Wait(t, `"end":"shutdown"`, up)
}
