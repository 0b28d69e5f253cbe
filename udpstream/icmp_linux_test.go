package udpstream

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	testworld "github.com/edgerelay/relay/internal/world"
)

// sendICMPv6Unreachable sends, from a raw socket on ::1, an ICMPv6
// destination unreachable of the given code about a UDP datagram from src to
// dst, as a router or a firewall on the way to dst does. The kernel fills in
// the checksum of a raw ICMPv6 socket.
func sendICMPv6Unreachable(t *testing.T, code byte, src, dst netip.AddrPort) {
	t.Helper()
	c, err := net.ListenPacket("ip6:ipv6-icmp", "::1")
	if err != nil {
		t.Skipf("needs a raw ICMPv6 socket (root): %v", err)
	}
	defer c.Close()
	msg := make([]byte, 8+40+8)
	msg[0], msg[1] = 1, code // destination unreachable
	inner := msg[8:]
	inner[0] = 6 << 4
	binary.BigEndian.PutUint16(inner[4:], 8) // payload: the UDP header
	inner[6], inner[7] = 17, 64              // next header UDP, hop limit
	s, d := src.Addr().As16(), dst.Addr().As16()
	copy(inner[8:], s[:])
	copy(inner[24:], d[:])
	binary.BigEndian.PutUint16(inner[40:], src.Port())
	binary.BigEndian.PutUint16(inner[42:], dst.Port())
	binary.BigEndian.PutUint16(inner[44:], 8)
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: net.IPv6loopback}); err != nil {
		t.Fatal(err)
	}
}

// v6Upstreams starts two upstreams on ::1: a primary that the test reads
// itself and never answers from, and an echo backend tagged "backup". It
// skips the test where there is no IPv6 loopback.
func v6Upstreams(t *testing.T) (*net.UDPConn, *backend) {
	t.Helper()
	primary, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	t.Cleanup(func() { _ = primary.Close() })
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	backup := &backend{conn: c, tag: "backup", done: make(chan struct{})}
	go backup.serve()
	t.Cleanup(backup.close)
	return primary, backup
}

// sessionAt reads the next datagram at upstream and returns its source,
// the session's socket.
func sessionAt(t *testing.T, upstream *net.UDPConn) netip.AddrPort {
	t.Helper()
	_ = upstream.SetReadDeadline(time.Now().Add(testworld.WaitLimit))
	_, from, err := upstream.ReadFromUDPAddrPort(make([]byte, 64))
	if err != nil {
		t.Fatalf("no datagram reached the upstream: %v", err)
	}
	return from
}

// TestFailoverOnAdminProhibited: an IPv6 upstream behind a firewall that
// rejects with "administratively prohibited" (firewalld's default; the
// kernel reports it as EACCES) is marked down and the session moves to the
// next upstream, as for port unreachable. It used to end the session as
// upstream_error instead, and the client's next datagram opened a new
// session to the same upstream, which was never marked down.
func TestFailoverOnAdminProhibited(t *testing.T) {
	checkLeaks(t)
	primary, b := v6Upstreams(t)
	primaryAddr := primary.LocalAddr().(*net.UDPAddr).AddrPort()
	w := newWorld(t, 1, func(c *Config) { c.Upstreams[0] = []string{primaryAddr.String(), b.addr().String()} })
	to := w.port(0)
	c := newClient(t, "127.0.0.2")
	c.send(to, []byte("first"))
	session := sessionAt(t, primary)
	sendICMPv6Unreachable(t, 1, session, primaryAddr) // code 1: administratively prohibited
	w.logs.Wait(t, `"message":"upstream down"`, `"upstream":"`+primaryAddr.String()+`"`)
	testworld.Eventually(t, "the session to move", func() bool { return w.relay.Stats().Failovers.Load() == 1 })
	msg := []byte("second")
	if e, err := parseEcho(c.exchange(to, msg)); err != nil || e.tag != "backup" || e.sum != sha(msg) {
		t.Fatalf("the second datagram: %+v %v, want it at the backup", e, err)
	}
	if n := w.logs.Count(`"end":"upstream_error"`); n != 0 {
		t.Errorf("%d sessions ended as upstream_error:\n%s", n, w.logs)
	}
	if n := w.relay.Stats().SessionsCreated.Load(); n != 1 {
		t.Errorf("SessionsCreated = %d, want 1", n)
	}
}

// heldNet dials through its network, wrapping the socket to held in a
// heldConn.
type heldNet struct {
	network
	held netip.AddrPort
	conn *heldConn
}

func (n *heldNet) dial(up netip.AddrPort) (packetConn, error) {
	c, err := n.network.dial(up)
	if err != nil || up != n.held {
		return c, err
	}
	n.conn.packetConn = c
	return n.conn, nil
}

// heldConn holds the next write, once hold is set, until release is called.
type heldConn struct {
	packetConn
	hold     atomic.Bool
	entered  chan struct{}
	released chan struct{}
	release  func() // closes released; safe to call again
}

func newHeldConn() *heldConn {
	c := &heldConn{entered: make(chan struct{}), released: make(chan struct{})}
	c.release = sync.OnceFunc(func() { close(c.released) })
	return c
}

func (c *heldConn) writeBatch(b *batch, from, to int) (int, error) {
	if c.hold.CompareAndSwap(true, false) {
		close(c.entered)
		<-c.released
	}
	return c.packetConn.writeBatch(b, from, to)
}

// waitEntered waits for the held write to begin.
func (c *heldConn) waitEntered(t *testing.T, what string) {
	t.Helper()
	select {
	case <-c.entered:
	case <-time.After(testworld.WaitLimit):
		t.Fatalf("%s never reached the primary's socket in %v", what, testworld.WaitLimit)
	}
}

// pendingError reports whether the held socket has an error to report
// (POLLERR): the kernel has taken in the ICMP error.
func (c *heldConn) pendingError() bool {
	ev := int16(0)
	_ = c.packetConn.(*sysConn).rc.Control(func(fd uintptr) { ev = pollNow(fd) })
	return ev&unix.POLLERR != 0
}

// TestSendDuringFailover: the primary upstream answers a session's
// datagram with an ICMPv6 port unreachable while the session is sending
// the client's next datagram to it. That datagram reaches the backup,
// whichever goroutine was sending it:
//   - reader: the session is open, the port's reader is sending, and the
//     session's own reader sees the error, moves the session and closes the
//     socket under the send. The datagram used to be dropped as a send
//     error.
//   - setup: the session is still being opened, setupLoop is sending what
//     the client sent meanwhile and no session reader runs yet; the kernel
//     reports the error to that send, which moves the session itself.
//
// The held send is released at cleanup at the latest, before the relay
// closes, so a failing run fails instead of hanging in Close.
func TestSendDuringFailover(t *testing.T) {
	checkLeaks(t)
	t.Run("reader", func(t *testing.T) { testSendDuringFailover(t, false) })
	t.Run("setup", func(t *testing.T) { testSendDuringFailover(t, true) })
}

func testSendDuringFailover(t *testing.T, duringSetup bool) {
	primary, b := v6Upstreams(t)
	primaryAddr := primary.LocalAddr().(*net.UDPAddr).AddrPort()
	cfg := Config{Name: "rtb", Listen: []string{"127.0.0.1:0"},
		Upstreams: [][]string{{primaryAddr.String(), b.addr().String()}}, Log: zerolog.Nop()}
	held := newHeldConn()
	r := serveOn(t, cfg, &heldNet{network: defaultNetwork(&cfg), held: primaryAddr, conn: held})
	t.Cleanup(held.release) // runs before serveOn's Close, which waits for the held send
	to := r.Addrs()[0]
	st := r.Stats()
	c := newClient(t, "127.0.0.2")

	msg := []byte("second")
	if duringSetup {
		msg = []byte("first")
		held.hold.Store(true)
		c.send(to, msg)
		held.waitEntered(t, "the session's first datagram")
		session := held.packetConn.localAddr().(*net.UDPAddr).AddrPort()
		sendICMPv6Unreachable(t, 4, session, primaryAddr) // code 4: port unreachable
		testworld.Eventually(t, "the ICMP error at the session's socket", held.pendingError)
		held.release()
	} else {
		c.send(to, []byte("first"))
		session := sessionAt(t, primary)
		// Once counted, the session is in the table and its reader runs:
		// the next datagram is the port reader's to send, not setupLoop's.
		waitStat(t, "SessionsCreated", st.SessionsCreated.Load, 1)
		held.hold.Store(true)
		c.send(to, msg)
		held.waitEntered(t, "the second datagram")
		sendICMPv6Unreachable(t, 4, session, primaryAddr)
		testworld.Eventually(t, "the reader to move the session", func() bool { return st.Failovers.Load() == 1 })
		held.release()
	}
	p, _, ok := c.recv(5 * time.Second)
	if !ok {
		t.Fatalf("no reply to the datagram sent during the failover; failovers %d, send errors %d",
			st.Failovers.Load(), st.Drops.SendError.Load())
	}
	if e, err := parseEcho(p); err != nil || e.tag != "backup" || e.sum != sha(msg) {
		t.Fatalf("reply %+v %v, want %q echoed by the backup", e, err, msg)
	}
	if n := st.Failovers.Load(); n != 1 {
		t.Errorf("Failovers = %d, want 1", n)
	}
	if n := st.Drops.SendError.Load(); n != 0 {
		t.Errorf("SendError = %d, want 0", n)
	}
}
