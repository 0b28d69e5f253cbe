package forward

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
	"github.com/edgerelay/relay/limit"
)

// dialFrom connects to addr from the loopback address src (any 127/8
// address is this machine's on Linux).
func dialFrom(t *testing.T, src, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// refusals records what Config.Refused was told.
type refusals struct {
	mu   sync.Mutex
	seen []string
}

func (r *refusals) record(client netip.AddrPort, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, client.Addr().String()+" "+reason)
}

func (r *refusals) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// TestPerSourceMaxConns: 127.0.0.2 over its limit of two is closed before
// any dial while 127.0.0.3 still connects, and gets a place back when one
// of its connections ends.
func TestPerSourceMaxConns(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	var refused refusals
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}},
		PerSource: limit.Config{MaxConns: 2}, Refused: refused.record})
	a1 := dialFrom(t, "127.0.0.2", r.addr(0))
	a2 := dialFrom(t, "127.0.0.2", r.addr(0))
	for _, c := range []net.Conn{a1, a2} {
		if got := roundTrip(t, c, "hello"); got != "hello" {
			t.Fatalf("echo %q", got)
		}
	}
	expectClosed(t, dialFrom(t, "127.0.0.2", r.addr(0)), 2*time.Second)
	b := dialFrom(t, "127.0.0.3", r.addr(0))
	if got := roundTrip(t, b, "other"); got != "other" {
		t.Fatalf("127.0.0.3 echo %q", got)
	}
	if n := r.Stats().RejectedPerSource.Load(); n != 1 {
		t.Errorf("RejectedPerSource = %d, want 1", n)
	}
	if n := backend.Accepted(); n != 3 {
		t.Errorf("backend accepted %d, want 3 (no dial for the refused client)", n)
	}
	want := "127.0.0.2 per_source: too many connections from this source"
	if got := refused.get(); len(got) != 1 || got[0] != want {
		t.Errorf("Refused hook got %q, want [%q]", got, want)
	}

	a1.Close()
	world.Eventually(t, "a1's place given back", func() bool { return r.Stats().Active.Load() == 2 })
	if got := roundTrip(t, dialFrom(t, "127.0.0.2", r.addr(0)), "again"); got != "again" {
		t.Fatalf("127.0.0.2 after a release: echo %q", got)
	}
}

// TestPerSourceRate: a burst of three at one per minute; the fourth in a
// row is closed and logged on the listener's own log when no Refused hook
// is set.
func TestPerSourceRate(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}},
		PerSource: limit.Config{Rate: 1.0 / 60, Burst: 3}})
	for i := range 3 {
		c := dialFrom(t, "127.0.0.2", r.addr(0))
		if got := roundTrip(t, c, "x"); got != "x" {
			t.Fatalf("connection %d: echo %q", i+1, got)
		}
		c.Close()
	}
	expectClosed(t, dialFrom(t, "127.0.0.2", r.addr(0)), 2*time.Second)
	r.logs.Wait(t, `"reason":"per_source: connection rate of this source exceeded"`, `"client":"127.0.0.2:`)
	if n := backend.Accepted(); n != 3 {
		t.Errorf("backend accepted %d, want 3", n)
	}
}

// TestPerSourceReleasedOnDialFailure: a connection whose upstream cannot be
// reached gives its place back, or a dead upstream would lock sources out.
func TestPerSourceReleasedOnDialFailure(t *testing.T) {
	checkLeaks(t)
	r := startRelay(t, Config{Upstreams: [][]string{{world.DeadAddr(t)}},
		PerSource: limit.Config{MaxConns: 1}})
	for i := range 3 {
		expectClosed(t, dialFrom(t, "127.0.0.2", r.addr(0)), 5*time.Second)
		world.Eventually(t, "connection ended", func() bool { return r.Stats().Active.Load() == 0 })
		if n := r.Stats().RejectedPerSource.Load(); n != 0 {
			t.Fatalf("attempt %d: %d per-source rejections, want 0", i+1, n)
		}
	}
}
