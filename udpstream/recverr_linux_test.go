package udpstream

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	testworld "github.com/edgerelay/relay/internal/world"
)

// TestFailoverOnPoweredOffHost: a session whose upstream is a host on the
// relay's own link that does not answer ARP (IPv4) or neighbour discovery
// (IPv6) moves to the next upstream, and the upstream is marked down with
// the reason. Linux reports the host unreachable of a failed resolution on
// a connected UDP socket only with IP_RECVERR / IPV6_RECVERR set; without
// it every datagram to a powered-off host vanished and the session stayed.
func TestFailoverOnPoweredOffHost(t *testing.T) {
	if !testworld.RunInNetns(t, testworld.SilentLink(10*time.Millisecond)...) {
		return
	}
	for _, tc := range []struct{ dead, reason string }{
		{"10.99.0.2:8100", "ICMP host unreachable from 10.99.0.1"},
		{"[fd00:99::2]:8100", "ICMPv6 host unreachable (address unreachable) from fd00:99::1"},
	} {
		t.Run(tc.dead, func(t *testing.T) {
			checkLeaks(t)
			w := newWorld(t, 1, func(c *Config) {
				c.Upstreams[0] = append([]string{tc.dead}, c.Upstreams[0]...)
			})
			to := w.port(0)
			c := newClient(t, "127.0.0.2")
			c.send(to, []byte("first")) // to the dead host: lost while its address resolves
			line := w.logs.Wait(t, `"message":"upstream down"`)
			if !testworld.ContainsAll(line, `"upstream":"`+tc.dead+`"`, "no route to host", tc.reason) {
				t.Errorf("the down line does not name the upstream and the reason %q:\n%s", tc.reason, line)
			}
			testworld.Eventually(t, "the session to move", func() bool { return w.relay.Stats().Failovers.Load() == 1 })

			// Every datagram now reaches the backup, intact, in the same session.
			const n = 40
			sent := map[string]bool{}
			for i := range n {
				p := fmt.Appendf(nil, "datagram %d of the stream", i)
				sent[sha(p)] = true
				c.send(to, p)
			}
			for i := range n {
				p, _, ok := c.recv(5 * time.Second)
				if !ok {
					t.Fatalf("%d of %d replies", i, n)
				}
				e, err := parseEcho(p)
				if err != nil || e.tag != "b0" || !sent[e.sum] {
					t.Fatalf("reply %d: %+v %v, want a datagram of the stream echoed by the backup", i, e, err)
				}
				delete(sent, e.sum)
			}
			st := w.relay.Stats()
			if st.SessionsCreated.Load() != 1 || st.Drops.Unreachable.Load() == 0 || st.Drops.SendError.Load() != 0 {
				t.Errorf("sessions created %d, unreachable drops %d, send errors %d; want 1, >0, 0",
					st.SessionsCreated.Load(), st.Drops.Unreachable.Load(), st.Drops.SendError.Load())
			}
			if n := w.logs.Count(`"end":"upstream_error"`); n != 0 {
				t.Errorf("%d sessions ended as upstream_error:\n%s", n, w.logs)
			}
		})
	}
}

// errQueueConn is a session socket (dialled as the relay dials) towards a
// closed loopback port, after one datagram: the port unreachable it drew is
// the socket's pending error and, with IP_RECVERR, an error queue entry.
func errQueueConn(t *testing.T) (*sysConn, *batch) {
	t.Helper()
	n := newSysNet(1<<20, 1<<20, false, zerolog.Nop())
	pc, err := n.dial(netip.MustParseAddrPort(deadUDPAddr(t)))
	if err != nil {
		t.Fatal(err)
	}
	c := pc.(*sysConn)
	t.Cleanup(func() { _ = c.close() })
	b := n.newBatch()
	t.Cleanup(b.release)
	b.msgs[0].buf = append(b.msgs[0].buf[:0], "x"...)
	if _, err := c.writeBatch(b, 0, 1); err != nil {
		t.Fatal(err)
	}
	testworld.Eventually(t, "the port unreachable (POLLERR)", func() bool { return pollErr(c) })
	return c, b
}

// pollErr reports whether poll(2) shows POLLERR on c: a pending error or
// an error queue not yet read.
func pollErr(c *sysConn) bool {
	var ev int16
	_ = c.rc.Control(func(fd uintptr) { ev = pollNow(fd) })
	return ev&unix.POLLERR != 0
}

// TestErrorQueueDrained: whichever call takes a session socket's ICMP error
// (the reader's recvmmsg, a send, or neither, when a send took the pending
// error without reading the queue) reads the error queue empty, so POLLERR
// ends; the error reported says which ICMP message it was and from whom,
// and the reader reports a leftover entry no second time.
func TestErrorQueueDrained(t *testing.T) {
	checkLeaks(t)
	const why = "connection refused (ICMP port unreachable from 127.0.0.1)"
	t.Run("reader", func(t *testing.T) {
		c, _ := errQueueConn(t)
		_, err := c.readBatch()
		if !isUnreachable(err) || !strings.Contains(err.Error(), why) {
			t.Errorf("readBatch: %v, want %q", err, why)
		}
		if pollErr(c) {
			t.Error("POLLERR after the read: the error queue is not empty")
		}
	})
	t.Run("send", func(t *testing.T) {
		c, b := errQueueConn(t)
		_, err := c.writeBatch(b, 0, 1)
		if !isUnreachable(err) || !strings.Contains(err.Error(), why) {
			t.Errorf("writeBatch: %v, want %q", err, why)
		}
		if pollErr(c) {
			t.Error("POLLERR after the send: the error queue is not empty")
		}
	})
	t.Run("leftover", func(t *testing.T) {
		c, _ := errQueueConn(t)
		_ = c.rc.Control(func(fd uintptr) { _, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR) })
		read := make(chan error, 1)
		go func() {
			b, err := c.readBatch()
			if b != nil {
				b.release()
			}
			read <- err
		}()
		testworld.Eventually(t, "the reader to empty the error queue", func() bool { return !pollErr(c) })
		_ = c.close()
		if err := <-read; isUnreachable(err) {
			t.Errorf("the reader reported an error a send had reported already: %v", err)
		}
	})
}
