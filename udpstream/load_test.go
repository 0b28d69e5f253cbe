//go:build linux

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
)

// A small load generator for the steady-state allocation test and the
// benchmark: a sender and a sink on the relay's own batched sockets, so
// neither side allocates or costs a syscall per datagram.

// sink counts what arrives on a loopback socket and, if echo is set, sends
// it back.
type sink struct {
	conn      *sysConn
	echo      bool
	datagrams atomic.Uint64
	bytes     atomic.Uint64
	done      chan struct{}
}

func startSink(t testing.TB, echo bool) *sink { return startSinkAt(t, "127.0.0.1", echo) }

func startSinkAt(t testing.TB, ip string, echo bool) *sink {
	t.Helper()
	n := newSysNet(4<<20, 4<<20, false, zerolog.Nop())
	pc, err := n.listen(ip + ":0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{conn: pc.(*sysConn), echo: echo, done: make(chan struct{})}
	go s.readLoop()
	t.Cleanup(s.close)
	return s
}

func (s *sink) addr() netip.AddrPort { return s.conn.uc.LocalAddr().(*net.UDPAddr).AddrPort() }

func (s *sink) readLoop() {
	defer close(s.done)
	for {
		b, err := s.conn.readBatch()
		if err != nil {
			return
		}
		s.datagrams.Add(uint64(b.n))
		s.bytes.Add(payloadBytes(b, 0, b.n))
		if s.echo {
			_, _ = s.conn.writeBatch(b, 0, b.n)
		}
		b.release()
	}
}

func (s *sink) close() {
	_ = s.conn.close()
	<-s.done
}

// sender sends fixed-size datagrams from one socket, in batches.
type sender struct {
	conn *sysConn
	b    *batch
}

// newSender sends from a new socket on address from, connected to to.
func newSender(t testing.TB, from string, to netip.AddrPort, size int) *sender {
	t.Helper()
	laddr := net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(from), 0))
	uc, err := net.DialUDP("udp4", laddr, net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatal(err)
	}
	_ = uc.SetWriteBuffer(4 << 20)
	c, err := newSysConn(uc, true, newBatchPool(batchSize, 0), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.close() })
	return senderOn(c, to, size)
}

// senderOn sends from an existing socket (without GSO, like a plain client).
func senderOn(c *sysConn, to netip.AddrPort, size int) *sender {
	c.gso.max.Store(0)
	s := &sender{conn: c, b: newBatchPool(batchSize, 0).get()}
	for i := range s.b.msgs {
		s.b.msgs[i].buf = s.b.msgs[i].buf[:size]
		s.b.msgs[i].addr = to
	}
	return s
}

// send sends n datagrams (n ≤ the batch size), numbered from seq.
func (s *sender) send(n int, seq uint64) (int, error) {
	for i := range n {
		if len(s.b.msgs[i].buf) >= 8 {
			binary.BigEndian.PutUint64(s.b.msgs[i].buf, seq+uint64(i))
		}
	}
	return s.conn.writeBatch(s.b, 0, n)
}

// blast sends for d, unpaced (rate 0) or at rate datagrams per second in
// bursts every millisecond, and returns how many it sent.
func (s *sender) blast(d time.Duration, rate float64) uint64 {
	start := time.Now()
	var sent uint64
	batchN := len(s.b.msgs)
	for {
		elapsed := time.Since(start)
		if elapsed >= d {
			return sent
		}
		n := batchN
		if rate > 0 {
			due := uint64(elapsed.Seconds() * rate)
			if due <= sent {
				time.Sleep(time.Millisecond)
				continue
			}
			n = int(min(due-sent, uint64(batchN)))
		}
		k, _ := s.send(n, sent)
		sent += uint64(k)
		if k < n {
			sent++ // the failed one was offered too
		}
	}
}

// startRelayTo runs a relay on 127.0.0.1 forwarding one port to upstream,
// with GSO on the relay's sends if gso is set.
func startRelayTo(t testing.TB, upstream netip.AddrPort, gso bool) *Relay {
	t.Helper()
	cfg := Config{Name: "bench", Listen: []string{"127.0.0.1:0"}, Upstreams: [][]string{{upstream.String()}}}
	nw := newSysNet(cfg.readBuffer(), cfg.writeBuffer(), false, zerolog.Nop())
	nw.gso = gso
	r, err := listen(cfg, nw)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = r.Serve() }()
	t.Cleanup(func() { _ = r.Close(); wg.Wait() })
	return r
}

// awaitCount waits until c reaches want or stops growing for 100ms (the
// path has drained), and returns it.
func awaitCount(c *atomic.Uint64, want uint64) uint64 {
	last, changed := c.Load(), time.Now()
	for last < want && time.Since(changed) < 100*time.Millisecond {
		time.Sleep(50 * time.Microsecond)
		if now := c.Load(); now != last {
			last, changed = now, time.Now()
		}
	}
	return last
}
