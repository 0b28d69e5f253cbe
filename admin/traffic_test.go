package admin_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edgerelay/relay/admin"
	"github.com/edgerelay/relay/forward"
	"github.com/edgerelay/relay/internal/world"
)

// The adapter the daemon uses, in miniature: forward's Stats -> Snapshot.
func forwardSnapshot(name string, st *forward.Stats) admin.Snapshot {
	return admin.Snapshot{
		Listener:        name,
		Mode:            "tcp",
		BytesToUpstream: st.BytesIn.Load(),
		BytesToClient:   st.BytesOut.Load(),
		Conns: &admin.Conns{
			Accepted:         st.Accepted.Load(),
			RejectedACL:      st.Rejected.Load(),
			RejectedMaxConns: st.Refused.Load(),
			Active:           st.Active.Load(),
			DialFailures:     st.DialFailures.Load(),
		},
	}
}

// replySize is what the backend sends back once the client has finished
// sending.
const replySize = 1000

// backend reads each connection to EOF, then answers replySize bytes.
type backend struct {
	ln net.Listener
	wg sync.WaitGroup
}

func startBackend(t *testing.T) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln}
	b.wg.Add(1)
	go b.acceptLoop()
	return b
}

func (b *backend) acceptLoop() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer c.Close()
			if _, err := io.Copy(io.Discard, c); err == nil {
				c.Write(bytes.Repeat([]byte{'r'}, replySize))
			}
		}()
	}
}

func (b *backend) close() { b.ln.Close(); b.wg.Wait() }

// relay runs a forward listener and returns it with a stop func.
func relay(t *testing.T, cfg forward.Config) (*forward.Listener, func()) {
	t.Helper()
	l, err := forward.Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- l.Serve() }()
	return l, func() {
		l.Close()
		if err := <-served; !errors.Is(err, forward.ErrClosed) {
			t.Errorf("%s: Serve returned %v", cfg.Name, err)
		}
	}
}

// exchange sends n bytes through the relay, half-closes, and returns how
// many bytes came back before EOF.
func exchange(t *testing.T, addr net.Addr, n int) int {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if n > 0 {
		if _, err := c.Write(bytes.Repeat([]byte{'q'}, n)); err != nil {
			t.Fatal(err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.Copy(io.Discard, c) // a refused client sees EOF or a reset
	return int(got)
}

// refusingAddr returns a loopback address that refuses connections: a TCP
// socket bound but never listening holds the port, so that no other test
// can take it, as it could a port that was bound and closed.
func refusingAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	sin, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		t.Fatalf("getsockname: %T", sa)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sin.Port))
}

// TestScrapeAfterRealTraffic drives known traffic through real forward
// listeners on loopback and checks the exact counts in an HTTP scrape.
func TestScrapeAfterRealTraffic(t *testing.T) {
	defer test.CheckRoutines(t)()
	be := startBackend(t)
	defer be.close()

	var refuse atomic.Bool
	web, stopWeb := relay(t, forward.Config{
		Name: "cms-http", Listen: []string{"127.0.0.1:0"}, Upstreams: [][]string{{be.ln.Addr().String()}},
		MaxConns: 2,
		Admit:    func(netip.AddrPort) bool { return !refuse.Load() },
	})
	defer stopWeb()
	dead, stopDead := relay(t, forward.Config{
		Name: "cms-pro", Listen: []string{"127.0.0.1:0"}, Upstreams: [][]string{{refusingAddr(t)}},
	})
	defer stopDead()

	srv, err := admin.New(admin.Config{Listen: "127.0.0.1:0", Gather: func() []admin.Snapshot {
		return []admin.Snapshot{forwardSnapshot("cms-http", web.Stats()), forwardSnapshot("cms-pro", dead.Stats())}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	defer func() {
		srv.Close()
		if err := <-served; !errors.Is(err, admin.ErrClosed) {
			t.Errorf("admin Serve: %v", err)
		}
	}()

	// Three full exchanges of 300 bytes up, 1000 down.
	for range 3 {
		if got := exchange(t, web.Addrs()[0], 300); got != replySize {
			t.Fatalf("reply %d bytes, want %d", got, replySize)
		}
	}
	// Two refused by the ACL.
	refuse.Store(true)
	for range 2 {
		if got := exchange(t, web.Addrs()[0], 0); got != 0 {
			t.Fatalf("refused client got %d bytes", got)
		}
	}
	refuse.Store(false)
	st := web.Stats()
	// A client sees EOF a moment before the relay has counted its
	// connection as ended; max_conns counts the relay's view.
	world.Eventually(t, "the exchanges to end", func() bool { return st.Active.Load() == 0 && st.Rejected.Load() == 2 })
	// Two held open (max_conns 2), then one refused for the limit.
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", web.Addrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("0123456789"))
		held = append(held, c)
	}
	world.Eventually(t, "two held connections forwarding", func() bool { return st.Active.Load() == 2 && st.BytesIn.Load() == 920 })
	exchange(t, web.Addrs()[0], 0)
	world.Eventually(t, "the max_conns refusal", func() bool { return st.Refused.Load() == 1 })
	// One through a listener whose upstream is gone.
	if got := exchange(t, dead.Addrs()[0], 5); got != 0 {
		t.Fatalf("client of a dead upstream got %d bytes", got)
	}
	world.Eventually(t, "the dial failure", func() bool { return dead.Stats().Active.Load() == 0 && dead.Stats().DialFailures.Load() == 1 })

	url := "http://" + srv.Addr().String() + "/metrics"
	names := []string{"relay_bytes_total", "relay_connections_accepted_total", "relay_connections_active",
		"relay_connections_rejected_total", "relay_upstream_dial_failures_total"}
	want := func(upWeb, downWeb, active int) string {
		r := strings.NewReplacer("UP", strconv.Itoa(upWeb), "DOWN", strconv.Itoa(downWeb), "ACTIVE", strconv.Itoa(active))
		return r.Replace(`
# HELP relay_bytes_total Payload bytes relayed, by direction (to_upstream, to_client).
# TYPE relay_bytes_total counter
relay_bytes_total{direction="to_client",listener="cms-http"} DOWN
relay_bytes_total{direction="to_upstream",listener="cms-http"} UP
relay_bytes_total{direction="to_client",listener="cms-pro"} 0
relay_bytes_total{direction="to_upstream",listener="cms-pro"} 0
# HELP relay_connections_accepted_total TCP connections admitted (passed the ACL and max_conns).
# TYPE relay_connections_accepted_total counter
relay_connections_accepted_total{listener="cms-http"} 5
relay_connections_accepted_total{listener="cms-pro"} 1
# HELP relay_connections_active TCP connections open now.
# TYPE relay_connections_active gauge
relay_connections_active{listener="cms-http"} ACTIVE
relay_connections_active{listener="cms-pro"} 0
# HELP relay_connections_rejected_total TCP connections closed before any upstream dial, by reason (acl, per_source, proxy_header, max_conns).
# TYPE relay_connections_rejected_total counter
relay_connections_rejected_total{listener="cms-http",reason="acl"} 2
relay_connections_rejected_total{listener="cms-http",reason="max_conns"} 1
relay_connections_rejected_total{listener="cms-http",reason="per_source"} 0
relay_connections_rejected_total{listener="cms-http",reason="proxy_header"} 0
relay_connections_rejected_total{listener="cms-pro",reason="acl"} 0
relay_connections_rejected_total{listener="cms-pro",reason="max_conns"} 0
relay_connections_rejected_total{listener="cms-pro",reason="per_source"} 0
relay_connections_rejected_total{listener="cms-pro",reason="proxy_header"} 0
# HELP relay_upstream_dial_failures_total Upstream dials that failed.
# TYPE relay_upstream_dial_failures_total counter
relay_upstream_dial_failures_total{listener="cms-http"} 0
relay_upstream_dial_failures_total{listener="cms-pro"} 1
`)
	}
	if err := testutil.ScrapeAndCompare(url, strings.NewReader(want(920, 3000, 2)), names...); err != nil {
		t.Fatalf("with two held connections: %v", err)
	}

	// Finish the held ones: each gets its reply.
	for _, c := range held {
		c.(*net.TCPConn).CloseWrite()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if got, _ := io.Copy(io.Discard, c); got != replySize {
			t.Fatalf("held connection: reply %d bytes, want %d", got, replySize)
		}
	}
	world.Eventually(t, "held connections to end", func() bool { return st.Active.Load() == 0 })
	if err := testutil.ScrapeAndCompare(url, strings.NewReader(want(920, 5000, 0)), names...); err != nil {
		t.Fatalf("after all ended: %v", err)
	}
}
