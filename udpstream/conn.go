package udpstream

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"time"
)

// errNoHandover: the single-datagram network has no file descriptors to hand on.
var errNoHandover = errors.New("udpstream: this network cannot hand sockets over")

// msgBufSize is the buffer behind every message: the largest UDP payload is
// 65507 bytes over IPv4 and 65527 over IPv6, so nothing is ever truncated.
const msgBufSize = 1 << 16

// packetConn is the socket I/O the relay needs, one implementation per kind
// of network: sysConn moves batches with recvmmsg/sendmmsg on Linux, netConn
// moves one datagram per call over any net.PacketConn (vnet in tests).
//
// A packetConn has at most one reader at a time; writers may be concurrent.
type packetConn interface {
	// readBatch blocks until at least one datagram has arrived and returns
	// a batch holding one or more. The caller releases the batch. Buffers
	// are taken from the pool only once data is there, so the thousands of
	// idle sessions that wait in readBatch hold no buffer memory.
	readBatch() (*batch, error)
	// writeBatch sends b.msgs[from:to] in order, each to its addr unless
	// the socket is connected. It returns how many were sent before the
	// first error; the error belongs to b.msgs[from+n].
	writeBatch(b *batch, from, to int) (int, error)
	localAddr() net.Addr
	// stopReading makes a blocked or later readBatch fail at once while
	// the socket stays open for writing: a relay that handed its listen
	// socket to a successor still answers its own sessions through it.
	stopReading() error
	// answered reports, without reading or waiting, whether a datagram is
	// queued on the socket: an upstream's reply that the session's reader
	// has not taken yet. false where the network cannot tell.
	answered() bool
	// file returns a duplicate of the socket, for a successor to take over.
	file() (*os.File, error)
	close() error
}

// network opens the relay's sockets: listening ones for the listen ports and
// connected ones towards upstreams.
type network interface {
	listen(addr string) (packetConn, error)
	// inherit takes over a listen socket a predecessor handed on (its own
	// duplicate: the caller closes f).
	inherit(f *os.File) (packetConn, error)
	dial(upstream netip.AddrPort) (packetConn, error)
	// newBatch takes a batch from the pool the network's sockets use, for
	// a writer that has no batch of its own; the caller releases it.
	newBatch() *batch
	// trimBatches frees the pool's batches that stayed unused since its
	// previous call.
	trimBatches()
	// releaseBatches frees every batch the pool keeps free; a relay that
	// closes calls it.
	releaseBatches()
}

// message is one datagram in a batch.
type message struct {
	buf  []byte         // the payload; cap(buf) is msgBufSize
	addr netip.AddrPort // source when read from a listen socket, destination when written to one
	// local is the address the datagram was sent to when read from a
	// listen socket bound to every address, and the source address to
	// use when written to one; zero otherwise (the route chooses).
	local netip.Addr
	// truncated reports that the datagram did not fit buf (cannot happen
	// with msgBufSize buffers on real sockets; kept so it is counted if a
	// network ever does it).
	truncated bool
}

// batch is a reusable set of messages and, on Linux, the syscall headers that
// point at them. One goroutine uses a batch at a time.
type batch struct {
	msgs []message
	n    int // messages filled by the last read
	pool *batchPool
	sys  sysScratch // per-platform syscall scratch, built once per batch
}

// release returns the batch to its pool.
func (b *batch) release() {
	b.n = 0
	b.pool.put(b)
}

// packetNet is the part of pion/transport's transport.Net that the
// single-datagram path needs; *vnet.Net implements it, and so does stdNet.
type packetNet interface {
	ListenPacket(network, address string) (net.PacketConn, error)
	Dial(network, address string) (net.Conn, error)
}

// singleNet opens netConns over a packetNet.
type singleNet struct {
	pn   packetNet
	pool *batchPool
}

func newSingleNet(pn packetNet) *singleNet {
	return &singleNet{pn: pn, pool: newBatchPool(1, 0)}
}

func (n *singleNet) listen(addr string) (packetConn, error) {
	pc, err := n.pn.ListenPacket(udpNetwork(addr), addr)
	if err != nil {
		return nil, err
	}
	return &netConn{pc: pc, pool: n.pool}, nil
}

func (n *singleNet) newBatch() *batch { return n.pool.get() }
func (n *singleNet) trimBatches()     { n.pool.trim() }
func (n *singleNet) releaseBatches()  { n.pool.releaseFree() }

func (n *singleNet) inherit(*os.File) (packetConn, error) {
	return nil, errNoHandover
}

func (n *singleNet) dial(up netip.AddrPort) (packetConn, error) {
	network := "udp4"
	if !up.Addr().Is4() {
		network = "udp6"
	}
	c, err := n.pn.Dial(network, up.String())
	if err != nil {
		return nil, err
	}
	return &netConn{c: c, pool: n.pool}, nil
}

// udpNetwork picks "udp4" for IPv4 bind addresses: vnet knows only udp4, and
// for real sockets it keeps an IPv4 listener IPv4-only.
func udpNetwork(addr string) string {
	if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Is4() {
		return "udp4"
	}
	return "udp"
}

// netConn moves one datagram per call. Either pc (a listening socket) or c
// (a connected one) is set.
type netConn struct {
	pc   net.PacketConn
	c    net.Conn
	pool *batchPool
}

func (c *netConn) readBatch() (*batch, error) {
	b := c.pool.get()
	m := &b.msgs[0]
	buf := m.buf[:cap(m.buf)]
	var n int
	var err error
	if c.c != nil {
		n, err = c.c.Read(buf)
	} else {
		var from net.Addr
		n, from, err = c.pc.ReadFrom(buf)
		if ua, ok := from.(*net.UDPAddr); ok {
			// Unmapped, as the batched path does, so that sessions,
			// Admit and logs see IPv4 clients as IPv4.
			ap := ua.AddrPort()
			m.addr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
	}
	m.truncated = errors.Is(err, io.ErrShortBuffer)
	if err != nil && !m.truncated {
		b.release()
		return nil, err
	}
	m.buf = buf[:n]
	b.n = 1
	return b, nil
}

func (c *netConn) writeBatch(b *batch, from, to int) (int, error) {
	for i := from; i < to; i++ {
		m := &b.msgs[i]
		var err error
		if c.c != nil {
			_, err = c.c.Write(m.buf)
		} else {
			_, err = c.pc.WriteTo(m.buf, net.UDPAddrFromAddrPort(m.addr))
		}
		if err != nil {
			return i - from, err
		}
	}
	return to - from, nil
}

func (c *netConn) localAddr() net.Addr {
	if c.c != nil {
		return c.c.LocalAddr()
	}
	return c.pc.LocalAddr()
}

func (c *netConn) stopReading() error {
	if c.c != nil {
		return c.c.SetReadDeadline(time.Unix(1, 0))
	}
	return c.pc.SetReadDeadline(time.Unix(1, 0))
}

func (c *netConn) answered() bool { return false }

func (c *netConn) file() (*os.File, error) { return nil, errNoHandover }

func (c *netConn) close() error {
	if c.c != nil {
		return c.c.Close()
	}
	return c.pc.Close()
}
