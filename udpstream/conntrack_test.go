//go:build linux

package udpstream

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	testworld "github.com/edgerelay/relay/internal/world"
)

// selective is an upstream that answers only datagrams that start with
// "echo" (a legitimate client) and ignores the rest (a spoofed flood, whose
// sources would never answer anyway): the flood's sessions stay
// unconfirmed.
type selective struct {
	conn    *net.UDPConn
	ignored atomic.Uint64
	stream  seqSet // sequence numbers of the "echo-s<n>" datagrams it got
	done    chan struct{}
}

func startSelective(t *testing.T) *selective {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(8 << 20)
	if rc, err := c.SyscallConn(); err == nil { // as root, past net.core.rmem_max
		_ = rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) })
	}
	s := &selective{conn: c, done: make(chan struct{})}
	go s.serve()
	t.Cleanup(func() { _ = c.Close(); <-s.done })
	return s
}

func (s *selective) serve() {
	defer close(s.done)
	buf := make([]byte, 2048)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if !bytes.HasPrefix(buf[:n], []byte("echo")) {
			s.ignored.Add(1)
			continue
		}
		s.stream.markSeq(buf[:n])
		_, _ = s.conn.WriteToUDPAddrPort(buf[:n], from)
	}
}

func (s *selective) addr() string { return s.conn.LocalAddr().String() }

// startConntrackRelay runs a one-port relay on 127.0.0.1 to up with edit
// applied to its config.
func startConntrackRelay(t *testing.T, up string, edit func(*Config)) (*Relay, net.Addr, *testworld.LogBuffer) {
	t.Helper()
	logs := &testworld.LogBuffer{}
	cfg := Config{Name: "rtb", Listen: []string{"127.0.0.1:0"}, Upstreams: [][]string{{up}},
		Log: zerolog.New(logs).Level(zerolog.InfoLevel)}
	if edit != nil {
		edit(&cfg)
	}
	r, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve() }()
	t.Cleanup(func() { _ = r.Close(); <-served })
	return r, r.Addrs()[0], logs
}

// echoFrom sends "echo<msg>" from c and reports whether it came back within d.
func echoFrom(c *client, to net.Addr, msg string, d time.Duration) bool {
	want := "echo" + msg
	c.send(to, []byte(want))
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		p, _, ok := c.recv(time.Until(deadline))
		if ok && string(p) == want {
			return true
		}
		if !ok {
			return false
		}
	}
	return false
}

// TestEvictOldestUnconfirmed: with the table full, a newcomer takes the
// place of the oldest session the upstream never answered; a confirmed
// session is never evicted, so a table full of them refuses newcomers.
func TestEvictOldestUnconfirmed(t *testing.T) {
	checkLeaks(t)
	up := startSelective(t)
	r, addr, _ := startConntrackRelay(t, up.addr(), func(c *Config) { c.MaxSessions = 3; c.MaxSessionsPerSource = 10 })
	st := r.Stats()

	confirmed := newClient(t, "127.0.0.2")
	if !echoFrom(confirmed, addr, "a", 2*time.Second) {
		t.Fatal("first client not served")
	}
	silent1, silent2 := newClient(t, "127.0.0.3"), newClient(t, "127.0.0.4")
	silent1.send(addr, []byte("flood"))
	waitStat(t, "second session", st.SessionsCreated.Load, 2)
	silent2.send(addr, []byte("flood"))
	waitStat(t, "third session", st.SessionsCreated.Load, 3)
	testworld.Eventually(t, "upstream saw the flood", func() bool { return up.ignored.Load() == 2 })

	newcomer := newClient(t, "127.0.0.5")
	if !echoFrom(newcomer, addr, "b", 2*time.Second) {
		t.Fatal("newcomer not served in a table full of unconfirmed sessions")
	}
	if n := st.SessionsEvicted.Load(); n != 1 {
		t.Fatalf("SessionsEvicted = %d, want 1", n)
	}
	// silent1 was the oldest unconfirmed: its next datagram needs a new
	// session, which evicts silent2; the confirmed ones stay.
	if !echoFrom(confirmed, addr, "c", 2*time.Second) || !echoFrom(newcomer, addr, "d", 2*time.Second) {
		t.Fatal("a confirmed session lost its place")
	}
	silent1.send(addr, []byte("echo-again"))
	waitStat(t, "second eviction", st.SessionsEvicted.Load, 2)
	// Now three confirmed sessions fill the table: a newcomer is refused.
	if !echoFrom(silent1, addr, "e", 2*time.Second) {
		t.Fatal("silent1's new session not served")
	}
	late := newClient(t, "127.0.0.6")
	late.send(addr, []byte("echo"))
	waitStat(t, "session_limit drop", st.Drops.SessionLimit.Load, 1)
	if n := st.SessionsActive.Load(); n != 3 {
		t.Fatalf("SessionsActive = %d, want 3", n)
	}
	if n := st.SessionsEvicted.Load(); n != 2 {
		t.Fatalf("SessionsEvicted = %d, want 2 (a confirmed session was evicted)", n)
	}
}

// TestUnconfirmedExpiresFast: a session the upstream never answered ends
// after UnconfirmedTimeout, an answered one only after SessionTimeout.
func TestUnconfirmedExpiresFast(t *testing.T) {
	checkLeaks(t)
	up := startSelective(t)
	r, addr, logs := startConntrackRelay(t, up.addr(), func(c *Config) {
		c.SessionTimeout = time.Minute
		c.UnconfirmedTimeout = 200 * time.Millisecond
	})
	answered, silent := newClient(t, "127.0.0.2"), newClient(t, "127.0.0.3")
	if !echoFrom(answered, addr, "x", 2*time.Second) {
		t.Fatal("not served")
	}
	start := time.Now()
	silent.send(addr, []byte("nobody answers"))
	waitStat(t, "expiry", r.Stats().SessionsExpired.Load, 1)
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("unconfirmed session ended after %v, want 200ms (plus up to three sweeps)", d)
	}
	if n := r.Stats().SessionsActive.Load(); n != 1 {
		t.Errorf("SessionsActive = %d, want 1 (the answered session)", n)
	}
	if n := logs.Count(`"end":"idle"`); n != 0 {
		t.Errorf("an unconfirmed session's end was logged at info:\n%s", logs.String())
	}
}

// TestSessionsPerSource: one address varying its port gets at most
// MaxSessionsPerSource sessions; another address is not affected.
func TestSessionsPerSource(t *testing.T) {
	checkLeaks(t)
	up := startSelective(t)
	r, addr, _ := startConntrackRelay(t, up.addr(), func(c *Config) { c.MaxSessionsPerSource = 2 })
	for i := range 2 {
		if !echoFrom(newClient(t, "127.0.0.2"), addr, fmt.Sprint(i), 2*time.Second) {
			t.Fatalf("session %d of 127.0.0.2 not served", i+1)
		}
	}
	newClient(t, "127.0.0.2").send(addr, []byte("echo"))
	waitStat(t, "source_limit drop", r.Stats().Drops.SourceLimit.Load, 1)
	if !echoFrom(newClient(t, "127.0.0.3"), addr, "y", 2*time.Second) {
		t.Fatal("127.0.0.3 not served while 127.0.0.2 is at its limit")
	}
	if n := r.Stats().SessionsCreated.Load(); n != 3 {
		t.Fatalf("SessionsCreated = %d, want 3", n)
	}
}

// TestPerSourceRate: an address sending 100 datagrams at once with a cap
// of 20 a second gets about 20 through (a burst of one second's worth) and
// the rest are dropped as source_rate; another address is not affected.
func TestPerSourceRate(t *testing.T) {
	checkLeaks(t)
	up := startSelective(t)
	r, addr, _ := startConntrackRelay(t, up.addr(), func(c *Config) { c.PerSourceRate = 20 })
	st := r.Stats()
	fast := newClient(t, "127.0.0.2")
	for i := range 100 {
		fast.send(addr, fmt.Appendf(nil, "flood%d", i))
	}
	waitStat(t, "all 100 counted", func() uint64 { return st.DatagramsIn.Load() + st.Drops.SourceRate.Load() }, 100)
	if in := st.DatagramsIn.Load(); in < 20 || in > 22 {
		t.Errorf("%d datagrams of a 20/s source forwarded from a burst of 100, want about 20", in)
	}
	if !echoFrom(newClient(t, "127.0.0.3"), addr, "other", 2*time.Second) {
		t.Fatal("another address refused")
	}
}

// TestEvictEndingSession: a newcomer that finds the table full of one
// unconfirmed session which has just ended by itself (its upstream socket
// failed; its reader has not yet taken it out of the table) gets its place,
// but that session was not evicted: it is counted and logged once, by the
// reason it ended for, and the table's count stays right.
func TestEvictEndingSession(t *testing.T) {
	checkLeaks(t)
	up := startSelective(t)
	logs := &testworld.LogBuffer{}
	cfg := Config{Name: "rtb", Listen: []string{"127.0.0.1:0"}, Upstreams: [][]string{{up.addr()}},
		MaxSessions: 1, Log: zerolog.New(logs)}
	r, err := Listen(cfg) // not served: the test plays the session's reader
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p := r.ports[0]
	conn, err := r.net.dial(netip.MustParseAddrPort(up.addr()))
	if err != nil {
		t.Fatal(err)
	}
	client := netip.MustParseAddrPort("127.0.0.2:4000")
	s := newSession(p, client, netip.Addr{}, &sessionUpstream{conn: conn, addr: netip.MustParseAddrPort(up.addr())}, 0)
	p.sessions[client] = s
	r.unconfirmed.push(s)
	if !r.takeSlot() { // as open does
		t.Fatal("no place for the first session")
	}
	r.wg.Add(1) // as open does for relayReplies, which finish ends

	s.end(endUpstreamError, errors.New("upstream socket failed")) // the reader's end, just before its finish
	if !r.takeSlot() {
		t.Fatal("the newcomer got no place though the only session has ended")
	}
	s.finish()
	line := logs.Wait(t, `"message":"udp session ended"`)
	if !testworld.ContainsAll(line, `"end":"upstream_error"`) {
		t.Errorf("session line %s, want end upstream_error", line)
	}
	st := r.Stats()
	if n := st.SessionsEvicted.Load(); n != 0 {
		t.Errorf("SessionsEvicted = %d, want 0: the session ended as upstream_error, it was not evicted", n)
	}
	if n, held := st.SessionsActive.Load(), r.held.n.Load(); n != 1 || held != 1 {
		t.Errorf("SessionsActive = %d and %d places held, want 1 and 1 (the newcomer's place)", n, held)
	}
}

// TestEvictPassesOverOneWayStream: a one-way stream (its upstream, a
// player, never answers) stays unconfirmed, but it keeps sending; a full
// table evicts the oldest unconfirmed session that has been quiet, not
// the stream opened before it.
func TestEvictPassesOverOneWayStream(t *testing.T) {
	checkLeaks(t)
	up := startSelective(t)
	r, addr, _ := startConntrackRelay(t, up.addr(), func(c *Config) { c.MaxSessions = 3; c.MaxSessionsPerSource = 10 })
	st := r.Stats()
	oneWay, silent1, silent2 := newClient(t, "127.0.0.2"), newClient(t, "127.0.0.3"), newClient(t, "127.0.0.4")
	oneWay.send(addr, []byte("frame 0"))
	waitStat(t, "the stream's session", st.SessionsCreated.Load, 1)
	silent1.send(addr, []byte("flood"))
	waitStat(t, "second session", st.SessionsCreated.Load, 2)
	silent2.send(addr, []byte("flood"))
	waitStat(t, "third session", st.SessionsCreated.Load, 3)
	oneWay.send(addr, []byte("frame 1"))
	testworld.Eventually(t, "the upstream to get four datagrams", func() bool { return up.ignored.Load() == 4 })

	if !echoFrom(newClient(t, "127.0.0.5"), addr, "newcomer", 2*time.Second) {
		t.Fatal("newcomer not served in a table full of unconfirmed sessions")
	}
	oneWay.send(addr, []byte("frame 2"))
	testworld.Eventually(t, "the upstream to get frame 2", func() bool { return up.ignored.Load() == 5 })
	if n := st.SessionsCreated.Load(); n != 4 {
		t.Errorf("SessionsCreated = %d, want 4: the stream's session was evicted and opened again", n)
	}
	if n := st.SessionsEvicted.Load(); n != 1 {
		t.Errorf("SessionsEvicted = %d, want 1", n)
	}
	// silent1, the oldest quiet one, is gone: its next datagram needs a session.
	silent1.send(addr, []byte("flood again"))
	waitStat(t, "silent1's new session", st.SessionsCreated.Load, 5)
}
