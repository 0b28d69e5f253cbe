package forward

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
	"github.com/edgerelay/relay/limit"
	"github.com/edgerelay/relay/upstream"
)

// TestCloseDuringProxyHeaderWait: Close does not wait for a trusted
// front's header timeout, and a header wait that Close cuts short is no
// proxy_header rejection: neither counted nor logged as one (as a TLS
// handshake cut short is no failed handshake), and the slot is given
// back once.
func TestCloseDuringProxyHeaderWait(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}},
		AcceptProxy:        []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		ProxyHeaderTimeout: 8 * time.Second})
	c := dialFrom(t, "127.0.0.1", r.addr(0))
	if _, err := io.WriteString(c, "PROXY TCP4 "); err != nil { // the header's start: the relay waits for the rest
		t.Fatal(err)
	}
	world.Eventually(t, "the front's connection taken", func() bool { return r.Stats().Active.Load() == 1 })
	start := time.Now()
	r.Close()
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("Close took %v with a header wait pending", took)
	}
	expectClosed(t, c, 5*time.Second)
	st := r.Stats()
	if n := st.RejectedProxyHeader.Load(); n != 0 {
		t.Errorf("RejectedProxyHeader = %d, want 0 (a shutdown is no bad header)", n)
	}
	if n := r.logs.Count(`"message":"client refused"`); n != 0 {
		t.Errorf("%d refusal lines, want 0:\n%s", n, r.logs)
	}
	if n := st.Active.Load(); n != 0 {
		t.Errorf("Active = %d after Close", n)
	}
	if n := backend.Accepted(); n != 0 {
		t.Errorf("upstream dialled %d times, want 0", n)
	}
}

// TestRawShortageKeepsQueue: on an exclusive raw listener, a dial that
// failed for want of the relay's own descriptors says nothing of the
// printer (upstream.LocalShortage), so the jobs queued behind it are not
// closed as if the printer were dead: the next one gets its turn and is
// printed.
func TestRawShortageKeepsQueue(t *testing.T) {
	checkLeaks(t)
	p := newPrinter(t, &printer{})
	var calls atomic.Int32
	short := make(chan struct{})
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if calls.Add(1) == 1 {
			select { // fails once the second client waits behind it
			case <-short:
			case <-ctx.Done():
			}
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("socket", syscall.EMFILE)}
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	r := startRelay(t, Config{Name: "printer", Upstreams: [][]string{{p.Addr()}}, Dial: dial,
		Raw: &Raw{Exclusive: true}})
	first := r.dial(t, 0)
	world.Eventually(t, "the first client's dial", func() bool { return calls.Load() == 1 })
	second := r.dial(t, 0)
	world.Eventually(t, "the second client queued", func() bool { return r.Stats().QueueLength.Load() == 1 })
	close(short)
	expectClosed(t, first, 5*time.Second)
	if got := roundTrip(t, second, "\x05"); got != "\x06" {
		t.Fatalf("the queued client's status request: %q", got)
	}
	if n := r.logs.Count(`"message":"upstream down"`); n != 0 {
		t.Errorf("%d upstream-down lines, want 0:\n%s", n, r.logs)
	}
}

// TestNamedUpstreamStallsNoOne: the first dial of an upstream given by
// name waits for its DNS answer. That wait must not hold up the other
// connections of the Pool: the front serves all of them from one loop,
// which waited out the query there (2 s per server, again every 5 s for a
// name that never resolved). A client of the named port waits for DNS,
// whose server is silent, while a client of another port is served at
// once.
func TestNamedUpstreamStallsNoOne(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	dns := world.NewDNSServer(t)
	dns.Set("cms.test", world.Zone{Drop: true})
	const queryTimeout = 3 * time.Second
	res := upstream.NewResolver(upstream.ResolverConfig{Servers: []string{dns.Addr()}, Timeout: queryTimeout})
	lists := [][]string{{"cms.test:80"}, {backend.Addr()}}
	ups, err := upstream.New(upstream.Config{Listener: "test", Lists: lists, Resolver: res})
	if err != nil {
		t.Fatal(err)
	}
	r := startRelay(t, Config{Upstreams: lists, Upstream: ups})
	t.Cleanup(res.Close) // runs before the relay's Close: ends the query the named client waits on
	r.dial(t, 0)
	world.Eventually(t, "the name asked for", func() bool { return dns.Queries.Load() > 0 })
	start := time.Now()
	if got := roundTrip(t, r.dial(t, 1), "other"); got != "other" {
		t.Fatalf("echo %q", got)
	}
	if took := time.Since(start); took > queryTimeout/2 {
		t.Errorf("a client of another port waited %v while a name was resolved", took)
	}
}

// TestACLBeforeUntrustedHeader: a source the ACL rejects is rejected by
// the ACL, counted and logged as such, even when it opens with a PROXY
// header on a listener that accepts them from a trusted front: the ACL
// decides first on every path, and the rejection shows where the admin
// looks for it (the ACL's line, its counters, relay_connections_rejected_
// total{reason="acl"}), not as a bad header.
func TestACLBeforeUntrustedHeader(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	blocked := netip.MustParseAddr("127.0.0.2")
	r := listenRelay(t, Config{Upstreams: [][]string{{backend.Addr()}},
		AcceptProxy: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Admit:       func(c netip.AddrPort) bool { return c.Addr() != blocked }})
	expectClosed(t, serveAfterHeader(t, r, blocked.String()), 5*time.Second)
	world.Eventually(t, "the rejection counted", func() bool {
		st := r.Stats()
		return st.Rejected.Load()+st.RejectedProxyHeader.Load() == 1
	})
	if st := r.Stats(); st.Rejected.Load() != 1 || st.RejectedProxyHeader.Load() != 0 {
		t.Errorf("Rejected = %d, RejectedProxyHeader = %d; want the ACL's rejection", st.Rejected.Load(), st.RejectedProxyHeader.Load())
	}
	if n := r.logs.Count(`"message":"client refused"`); n != 0 {
		t.Errorf("%d proxy_header refusal lines, want 0:\n%s", n, r.logs)
	}
}

// TestUntrustedHeaderGivesBackSlot: a source refused for opening with a
// PROXY header, now asked about after the ACL and its per-source limit,
// gives its per-source place back: its next, plain connection is served
// under a limit of one.
func TestUntrustedHeaderGivesBackSlot(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := listenRelay(t, Config{Upstreams: [][]string{{backend.Addr()}},
		AcceptProxy: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		PerSource:   limit.Config{MaxConns: 1}})
	expectClosed(t, serveAfterHeader(t, r, "127.0.0.2"), 5*time.Second)
	if got := roundTrip(t, dialFrom(t, "127.0.0.2", r.addr(0)), "plain"); got != "plain" {
		t.Fatalf("plain client after the refusal: echo %q", got)
	}
	if st := r.Stats(); st.RejectedProxyHeader.Load() != 1 || st.RejectedPerSource.Load() != 0 {
		t.Errorf("RejectedProxyHeader = %d, RejectedPerSource = %d; want 1, 0", st.RejectedProxyHeader.Load(), st.RejectedPerSource.Load())
	}
}

// serveAfterHeader connects to r from src, sends a PROXY header and some
// payload, and serves r once r's kernel holds them, so that the check at
// accept sees the header. It returns the client's conn.
func serveAfterHeader(t *testing.T, r *relay, src string) *net.TCPConn {
	t.Helper()
	c := dialFrom(t, src, r.addr(0))
	if _, err := io.WriteString(c, "PROXY TCP4 10.0.0.1 127.0.0.1 1 2\r\nhello"); err != nil {
		t.Fatal(err)
	}
	world.Eventually(t, "the relay's kernel acknowledged the header", func() bool { return unacked(c) == 0 })
	r.serve(t)
	return c
}
