package udpstream

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
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

// batchTrimPeriod is how often a relay trims its pool (batchPool.trim): a
// batch unused for one to two periods is freed.
const batchTrimPeriod = time.Second

// maxFreeBatches caps the batches a pool keeps for reuse (64 MiB of
// 2 MiB batches); one handed back beyond it is left to the collector.
const maxFreeBatches = 32

// batchPool hands out batches of one size. The pool is what bounds buffer
// memory: a batch is held only between a read that found data and the end of
// forwarding it, so the number in use follows the number of goroutines busy
// forwarding, not the number of sessions or listen ports.
//
// It is a free list and not a sync.Pool, for what it keeps when traffic
// stops. A sync.Pool keeps every object handed back until the second
// collection after, and the first counts them as live: after 127 listen
// ports of an RTB range read at once it held about a batch per port, 260
// MiB of heap in use, and the first collection of an idle relay (Go forces
// one every two minutes) set the next target at 518 MiB
// (TestIdleListenPortsHoldNoBatch, BENCHMARKS.md).
// The free list instead frees, at each trim (the sweeper's, about every
// second), the batches that stayed unused since the trim before, and it
// allocates one batch at a time: readers woken together wait for the
// allocation in progress and then take a batch handed back meanwhile,
// rather than each allocating its own.
type batchPool struct {
	size    int
	allocMu sync.Mutex // held while allocating: see get

	mu   sync.Mutex // guards the following
	free []*batch   // most recently handed back last
	low  int        // the fewest batches free since the last trim: free[:low] went unused
}

func newBatchPool(size int) *batchPool {
	return &batchPool{size: size}
}

// get takes a free batch, or allocates one when none is free. Allocation is
// serialized and looks at the free list again once it has the lock: a 2 MiB
// allocation can let the scheduler run other readers, and without the lock
// each of them allocated a batch of its own while the first was still being
// made (127 at once for a range of 127 ports).
func (bp *batchPool) get() *batch {
	if b := bp.pop(); b != nil {
		return b
	}
	bp.allocMu.Lock()
	defer bp.allocMu.Unlock()
	if b := bp.pop(); b != nil {
		return b
	}
	return bp.alloc()
}

func (bp *batchPool) pop() *batch {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	n := len(bp.free)
	if n == 0 {
		return nil
	}
	b := bp.free[n-1]
	bp.free[n-1] = nil
	bp.free = bp.free[:n-1]
	bp.low = min(bp.low, n-1)
	return b
}

func (bp *batchPool) put(b *batch) {
	bp.mu.Lock()
	if len(bp.free) < maxFreeBatches {
		bp.free = append(bp.free, b)
	}
	bp.mu.Unlock()
}

// trim lets the collector have the batches that were not taken since the
// previous trim: a busy relay keeps what it uses, an idle one keeps none.
func (bp *batchPool) trim() {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	unused := bp.low
	n := copy(bp.free, bp.free[unused:])
	clear(bp.free[n:])
	bp.free = bp.free[:n]
	bp.low = n
}

func (bp *batchPool) alloc() *batch {
	b := &batch{msgs: make([]message, bp.size), pool: bp}
	// One slab per batch: one object for the GC instead of 32.
	slab := make([]byte, bp.size*msgBufSize)
	for i := range b.msgs {
		b.msgs[i].buf = slab[i*msgBufSize : i*msgBufSize : (i+1)*msgBufSize]
	}
	b.sys.init(b)
	return b
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
	return &singleNet{pn: pn, pool: newBatchPool(1)}
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
