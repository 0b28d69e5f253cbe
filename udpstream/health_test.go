package udpstream

import (
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	testworld "github.com/edgerelay/relay/internal/world"
)

// startBackendAt is startBackend on a given address (a dead upstream
// coming back).
func startBackendAt(t *testing.T, addr, tag string) *backend {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp4", ua)
	if err != nil {
		t.Skipf("the port of %s was taken meanwhile: %v", addr, err)
	}
	b := &backend{conn: c, tag: tag, done: make(chan struct{})}
	go b.serve()
	t.Cleanup(b.close)
	return b
}

// replyTag sends ping from c until a reply comes (at most tries times) and
// returns the tag of the backend that answered.
func replyTag(t *testing.T, c *client, to net.Addr, tries int) string {
	t.Helper()
	for range tries {
		c.send(to, []byte("ping"))
		if p, _, ok := c.recv(100 * time.Millisecond); ok {
			info, err := parseEcho(p)
			if err != nil {
				t.Fatalf("reply %q: %v", p, err)
			}
			return info.tag
		}
	}
	t.Fatalf("no reply in %d tries", tries)
	return ""
}

// TestPrimaryRecovers: a primary that refused (ICMP port unreachable) is
// re-tried in the background; once it answers, new sessions go to it again
// while the moved session stays on the backup.
func TestPrimaryRecovers(t *testing.T) {
	checkLeaks(t)
	dead := deadUDPAddr(t)
	w := newWorld(t, 1, func(c *Config) { c.Upstreams[0] = []string{dead, c.Upstreams[0][0]} })
	to := w.port(0)
	c1 := newClient(t, "127.0.0.2")
	if tag := replyTag(t, c1, to, 50); tag != "b0" {
		t.Fatalf("first session answered by %q, want the backup", tag)
	}
	startBackendAt(t, dead, "p")
	w.logs.Wait(t, `"message":"upstream up"`, `"upstream":"`+dead+`"`, `"down_for_ms"`)
	c2 := newClient(t, "127.0.0.3")
	if tag := replyTag(t, c2, to, 10); tag != "p" {
		t.Errorf("a new session after recovery went to %q, want the primary", tag)
	}
	if tag := replyTag(t, c1, to, 10); tag != "b0" {
		t.Errorf("the moved session went to %q, want it to stay on the backup", tag)
	}
	if n := w.relay.Stats().Failovers.Load(); n != 1 {
		t.Errorf("Failovers = %d, want 1 (the one session moved)", n)
	}
}

// TestEveryUDPUpstreamDown: with both upstreams refusing, new sources'
// datagrams are dropped at once as upstream_down, and the outage is
// logged once.
func TestEveryUDPUpstreamDown(t *testing.T) {
	checkLeaks(t)
	a, b := deadUDPAddr(t), deadUDPAddr(t)
	w := newWorld(t, 1, func(c *Config) { c.Upstreams[0] = []string{a, b} })
	to := w.port(0)
	c1 := newClient(t, "127.0.0.2")
	st := w.relay.Stats()
	for try := 0; st.Drops.UpstreamDown.Load() == 0; try++ {
		if try == 100 {
			t.Fatalf("no datagram dropped as upstream_down:\n%s", w.logs)
		}
		c1.send(to, []byte("ping"))
		newClient(t, "127.0.0.3").send(to, []byte("ping"))
		time.Sleep(20 * time.Millisecond)
	}
	if n := w.logs.Count("every upstream down"); n != 1 {
		t.Errorf("%d outage lines, want 1:\n%s", n, w.logs)
	}
	if n := w.logs.Count(`"message":"upstream down"`); n != 2 {
		t.Errorf("%d down lines, want 2:\n%s", n, w.logs)
	}
}

// TestFailoverWithoutResend: the ICMP port unreachable drawn by a stream's
// first datagram moves the session by itself, through the session's reply
// reader: the client's next datagram already reaches the backup. (The
// reader's readiness peek used to take the socket's pending error, so only
// a send that happened to run first saw it, and a stream whose reader won
// each race stayed on the dead upstream for good.)
func TestFailoverWithoutResend(t *testing.T) {
	checkLeaks(t)
	dead := deadUDPAddr(t)
	w := newWorld(t, 1, func(c *Config) { c.Upstreams[0] = []string{dead, c.Upstreams[0][0]} })
	to := w.port(0)
	c := newClient(t, "127.0.0.2")
	c.send(to, []byte("lost to the dead primary"))
	w.logs.Wait(t, `"message":"upstream down"`, `"upstream":"`+dead+`"`)
	testworld.Eventually(t, "the session to move", func() bool { return w.relay.Stats().Failovers.Load() == 1 })
	msg := []byte("second")
	if e, err := parseEcho(c.exchange(to, msg)); err != nil || e.tag != "b0" || e.sum != sha(msg) {
		t.Fatalf("the second datagram: %+v %v, want it at the backup b0", e, err)
	}
	st := w.relay.Stats()
	if n, u := st.SessionsCreated.Load(), st.Drops.Unreachable.Load(); n != 1 || u != 1 {
		t.Errorf("SessionsCreated %d, Unreachable %d; want 1 and 1", n, u)
	}
}

// shortNet fails the next `short` dials with EMFILE, as a relay out of
// descriptors does.
type shortNet struct {
	network
	short atomic.Int32
}

func (n *shortNet) dial(up netip.AddrPort) (packetConn, error) {
	if n.short.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "socket", Net: "udp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
	}
	return n.network.dial(up)
}

// TestDialShortageKeepsUpstreamUp: a session that cannot be opened for
// want of the relay's own descriptors drops its datagrams as session_error
// and says why, but leaves its upstreams up: the client's next datagram,
// once descriptors are back, opens a session to the primary.
func TestDialShortageKeepsUpstreamUp(t *testing.T) {
	checkLeaks(t)
	primary, backup := startBackend(t, "primary"), startBackend(t, "backup")
	logs := &testworld.LogBuffer{}
	cfg := Config{Name: "rtb", Listen: []string{"127.0.0.1:0"},
		Upstreams: [][]string{{primary.addr().String(), backup.addr().String()}}, Log: zerolog.New(logs)}
	n := &shortNet{network: defaultNetwork(&cfg)}
	n.short.Store(2) // the primary's dial and the backup's
	r := serveOn(t, cfg, n)
	to := r.Addrs()[0]
	c := newClient(t, "127.0.0.2")
	c.send(to, []byte("lost"))
	waitStat(t, "session_error drop", r.Stats().Drops.SessionError.Load, 1)
	logs.Wait(t, `"message":"udp session not opened"`, "too many open files")
	if e, err := parseEcho(c.exchange(to, []byte("again"))); err != nil || e.tag != "primary" {
		t.Fatalf("after the shortage: %+v %v, want the primary", e, err)
	}
	if n := logs.Count(`"message":"upstream down"`) + logs.Count("every upstream down"); n != 0 {
		t.Errorf("a local shortage was logged as an upstream outage:\n%s", logs)
	}
	if n := r.Stats().Drops.UpstreamDown.Load(); n != 0 {
		t.Errorf("upstream_down drops %d, want 0", n)
	}
}
