//go:build linux

package udpstream

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	testworld "github.com/edgerelay/relay/internal/world"
)

// heapSampler records the highest Go heap in use (the runtime's HeapInuse:
// objects and the free room in their spans) seen while it runs, sampling
// runtime/metrics, which does not stop the world, every 200 µs.
type heapSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func sampleHeap() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go h.run()
	return h
}

func (h *heapSampler) run() {
	defer close(h.done)
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	t := time.NewTicker(200 * time.Microsecond)
	defer t.Stop()
	for {
		metrics.Read(s)
		if v := s[0].Value.Uint64() + s[1].Value.Uint64(); v > h.peak.Load() {
			h.peak.Store(v)
		}
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
	}
}

// finish stops the sampler and returns the peak in bytes.
func (h *heapSampler) finish() uint64 {
	close(h.stop)
	<-h.done
	return h.peak.Load()
}

// burstSender sends one datagram to each of many ports per sendmmsg, from
// one socket, out of a batch of small buffers (a pool batch holds 2 MiB,
// which would count in the heap the test measures).
type burstSender struct {
	conn *sysConn
	b    *batch
}

func newBurstSender(t *testing.T, from string) *burstSender {
	t.Helper()
	pc, err := newSysNet(4<<20, 8<<20, false, zerolog.Nop()).listen(from + ":0")
	if err != nil {
		t.Fatal(err)
	}
	c := pc.(*sysConn)
	c.gso.max.Store(0)
	t.Cleanup(func() { _ = c.close() })
	b := &batch{msgs: make([]message, batchSize)}
	for i := range b.msgs {
		b.msgs[i].buf = make([]byte, 0, 2048)
	}
	b.sys.init(b)
	return &burstSender{conn: c, b: b}
}

// round sends datagram seq of stream i to ports[i] for each i in streams,
// size bytes each (streamDatagram). It reports the first failure.
func (s *burstSender) round(ports []netip.AddrPort, streams []int, seq, size int) (int, error) {
	sent := 0
	for first := 0; first < len(streams); first += len(s.b.msgs) {
		n := min(len(streams)-first, len(s.b.msgs))
		for k, i := range streams[first : first+n] {
			m := &s.b.msgs[k]
			m.buf = append(m.buf[:0], streamDatagram(i, seq, size)...)
			m.addr = ports[i]
		}
		k, err := s.conn.writeBatch(s.b, 0, n)
		sent += k
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// burstHeapLimit bounds the Go heap in use while a range of rtbPorts
// listen ports forwards bursts on every port at once (TestBurstHeap): the
// receive buffers of the pool's cap (16 MiB) and the rest, the sessions
// and the test's own bookkeeping, 5 to 10 MiB.
const burstHeapLimit = 48 << 20

// burstWorld is a range of rtbPorts listen ports with a stream on each, all
// from one CAYIN server to one upstream (a stream's datagrams are
// streamDatagram(port index, seq, …)), sent by burstSenders.
type burstWorld struct {
	t     *testing.T
	r     *Relay
	up    *streamSink // nil when the upstream only counts (fast)
	count func() uint64
	ports []netip.AddrPort
	ss    []*burstSender
}

// newBurstWorld starts the relay, its network wrapped by wrap if set and its
// buffers from bufs if set, and opens a session on every port with
// datagram 0 of its stream. The
// upstream is a streamSink, or with fast a sink that only counts (and
// keeps up with the relay: a streamSink reads and hashes one datagram at
// a time).
func newBurstWorld(t *testing.T, wrap func(network) network, bufs *Buffers, fast bool) *burstWorld {
	w := &burstWorld{t: t}
	var upAddr string
	if fast {
		s := startSink(t, false)
		var forced atomic.Bool // room for a whole burst, as the streamSink has
		_ = s.conn.rc.Control(func(fd uintptr) { setBuffer(int(fd), unix.SO_RCVBUF, unix.SO_RCVBUFFORCE, 32<<20, &forced) })
		upAddr, w.count = s.addr().String(), s.datagrams.Load
	} else {
		w.up = startStreamSink(t, rtbPorts)
		upAddr, w.count = w.up.conn.LocalAddr().String(), w.up.count
	}
	// One server sends every stream: its address needs a session on
	// every port.
	cfg := Config{Name: "rtb", MaxSessionsPerSource: rtbPorts, Buffers: bufs, Log: zerolog.Nop()}
	for range rtbPorts {
		cfg.Upstreams = append(cfg.Upstreams, []string{upAddr})
	}
	first := testworld.ReserveUDPPortRun(t, rtbPorts)
	for i := range rtbPorts {
		cfg.Listen = append(cfg.Listen, fmt.Sprintf("127.0.0.1:%d", first+i))
	}
	nw := defaultNetwork(&cfg)
	if wrap != nil {
		nw = wrap(nw)
	}
	w.r = serveOn(t, cfg, nw)
	for _, a := range w.r.Addrs() {
		w.ports = append(w.ports, a.(*net.UDPAddr).AddrPort())
	}
	for range 4 {
		w.ss = append(w.ss, newBurstSender(t, "127.0.0.2"))
	}
	w.send(0, 1, burstSize)
	waitStat(t, "sessions opened", func() uint64 { return w.r.stats.SessionsCreated.Load() }, rtbPorts)
	waitStat(t, "datagrams at the upstream", w.count, rtbPorts)
	return w
}

// burstSize is the size of the test's datagrams, an RTB stream's.
const burstSize = 1200

// send sends datagrams from … to-1 of every stream, the senders at once,
// each its share of the streams.
func (w *burstWorld) send(from, to, size int) {
	w.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(w.ss))
	for g, s := range w.ss {
		var streams []int // sender g sends streams g, g+len(ss), ...
		for i := g; i < len(w.ports); i += len(w.ss) {
			streams = append(streams, i)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := from; seq < to; seq++ {
				if _, err := s.round(w.ports, streams, seq, size); err != nil {
					errs <- fmt.Errorf("datagram %d: %w", seq, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		w.t.Fatal(err)
	}
}

// checkExact fails the test unless the upstream got datagrams 0 … n-1 of
// every stream, each once and intact.
func (w *burstWorld) checkExact(n int) {
	w.t.Helper()
	total := uint64(rtbPorts * n)
	if got := settledCount(w.count, total); got != total {
		w.t.Errorf("upstream got %d of %d datagrams; drops %v", got, total, w.r.stats.Drops.DropReasons())
	}
	short := 0
	for i := range rtbPorts {
		sum, arrived := w.up.streamDigest(i, n)
		if want := wantDigest(i, n, burstSize); arrived != n || sum != want {
			if short++; short <= 3 {
				w.t.Errorf("stream %d: upstream got %d of %d datagrams, sha256 %x, want %x", i, arrived, n, sum, want)
			}
		}
	}
	if short > 3 {
		w.t.Errorf("... and %d more streams short", short-3)
	}
	w.up.mu.Lock()
	defer w.up.mu.Unlock()
	if w.up.dups > 0 {
		w.t.Errorf("upstream got %d datagrams twice", w.up.dups)
	}
}

// poolPeak is the most batches the relay's pool had at once.
func (w *burstWorld) poolPeak(pool *batchPool) int {
	pool.mu.Lock()
	defer pool.mu.Unlock()
	return pool.peak
}

// collectLoop runs collections back to back until stop is closed, as a
// busy daemon's other listeners would make the collector run during a
// burst: readers it parks while they hold a batch are what made a pool
// without a cap grow.
func collectLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-stop:
			return
		default:
			runtime.GC()
		}
	}
}

// TestBurstHeap: bursts on every port of an RTB range at once (the
// signage case: every stream of a CAYIN server sends at the same moment),
// with the collector running, keep the Go heap in use under
// burstHeapLimit, and every datagram arrives once and intact. Without a
// cap on the batch pool one run in three to five peaked at 82 to 200 MiB
// (37 to 63 batches of 2 MiB).
func TestBurstHeap(t *testing.T) {
	checkLeaks(t)
	const (
		bursts = 3
		rounds = 64 // datagrams per port and burst
	)
	w := newBurstWorld(t, nil, nil, false)
	pool := w.r.net.(*sysNet).pool
	heap := sampleHeap()
	stop, collected := make(chan struct{}), make(chan struct{})
	go collectLoop(stop, collected)
	for burst := range bursts {
		// Each burst starts from an empty pool, as after an idle second.
		pool.trim()
		pool.trim()
		w.send(1+burst*rounds, 1+(burst+1)*rounds, burstSize)
		waitStat(t, "datagrams at the upstream", w.count, uint64(rtbPorts*(1+(burst+1)*rounds)))
	}
	close(stop)
	<-collected
	peak := heap.finish()
	batches := w.poolPeak(pool)
	t.Logf("%d bursts of %d × %d datagrams of %d bytes: heap in use peaked at %.1f MiB, %d batches live at most",
		bursts, rtbPorts, rounds, burstSize, float64(peak)/(1<<20), batches)
	w.checkExact(1 + bursts*rounds)
	if peak >= burstHeapLimit {
		t.Errorf("heap in use peaked at %.1f MiB during the bursts, want < %d MiB (%d batches of %d MiB live at once)",
			float64(peak)/(1<<20), burstHeapLimit>>20, batches, batchSize*msgBufSize>>20)
	}
}

// stalledNet dials through its network and wraps every session socket in a
// stalledConn sharing its gate.
type stalledNet struct {
	network
	g *stallGate
}

func (n *stalledNet) dial(up netip.AddrPort) (packetConn, error) {
	c, err := n.network.dial(up)
	if err != nil {
		return c, err
	}
	return &stalledConn{packetConn: c, g: n.g}, nil
}

// stallGate holds every write of its sockets while closed, as a socket
// whose send buffer is full holds its writer (EAGAIN until the NIC has
// sent), and counts the writers held.
type stallGate struct {
	closed atomic.Bool
	held   atomic.Int32
	open   chan struct{}
	opened func() // closes open; safe to call again
}

func newStallGate() *stallGate {
	g := &stallGate{open: make(chan struct{})}
	g.opened = sync.OnceFunc(func() { g.closed.Store(false); close(g.open) })
	return g
}

// wrap makes nw's session sockets wait at g.
func (g *stallGate) wrap(nw network) network { return &stalledNet{network: nw, g: g} }

// heldOrWaiting is how many readers hold a batch in a held send or wait
// for a batch of pool.
func (g *stallGate) heldOrWaiting(pool *batchPool) int {
	pool.mu.Lock()
	defer pool.mu.Unlock()
	return int(g.held.Load()) + len(pool.waiting)
}

type stalledConn struct {
	packetConn
	g *stallGate
}

func (c *stalledConn) writeBatch(b *batch, from, to int) (int, error) {
	if c.g.closed.Load() {
		c.g.held.Add(1)
		<-c.g.open
		c.g.held.Add(-1)
	}
	return c.packetConn.writeBatch(b, from, to)
}

// TestBatchesCappedWhileSendsStall: while the sends to the upstream wait
// for room (every session socket's writes held), a burst on every port of
// an RTB range leaves each port's reader holding the batch it read, or
// waiting for one: the pool stays at maxBatches (16 MiB), where it made a
// batch per port (127, 254 MiB) without a cap. Once the sends go on,
// every datagram arrives once and intact.
func TestBatchesCappedWhileSendsStall(t *testing.T) {
	checkLeaks(t)
	const rounds = 8
	g := newStallGate()
	w := newBurstWorld(t, g.wrap, nil, false)
	t.Cleanup(g.opened) // runs before the relay's Close: no held write holds it up
	pool := w.r.net.(*stalledNet).network.(*sysNet).pool
	g.closed.Store(true)
	w.send(1, 1+rounds, burstSize)
	// Every port's reader holds a batch in a held send, or waits for one.
	testworld.Eventually(t, "every port's reader to hold a batch or wait for one", func() bool {
		return g.heldOrWaiting(pool) == rtbPorts
	})
	pool.mu.Lock()
	live, waiting := pool.live, len(pool.waiting)
	pool.mu.Unlock()
	t.Logf("sends held: %d readers hold a batch in a send, %d wait for one, %d batches live", g.held.Load(), waiting, live)
	if live > maxBatches {
		t.Errorf("%d batches live (%d MiB) while the sends stall, want at most %d", live, live*batchSize*msgBufSize>>20, maxBatches)
	}
	g.opened()
	w.checkExact(1 + rounds)
}

// TestSharedBuffersCapTheProcess: two listeners that share one Buffers, as
// the daemon's do, hold maxBatches batches between them while their sends
// stall, not maxBatches each; every datagram arrives once the sends go on.
func TestSharedBuffersCapTheProcess(t *testing.T) {
	checkLeaks(t)
	const rounds = 4
	g := newStallGate()
	bufs := NewBuffers()
	a := newBurstWorld(t, g.wrap, bufs, false)
	b := newBurstWorld(t, g.wrap, bufs, false)
	t.Cleanup(g.opened) // runs before the relays' Close
	g.closed.Store(true)
	a.send(1, 1+rounds, burstSize)
	b.send(1, 1+rounds, burstSize)
	testworld.Eventually(t, "every port's reader of both listeners to hold a batch or wait for one", func() bool {
		return g.heldOrWaiting(bufs.pool) == 2*rtbPorts
	})
	bufs.pool.mu.Lock()
	live := bufs.pool.live
	bufs.pool.mu.Unlock()
	if live > maxBatches {
		t.Errorf("%d batches live over two listeners sharing their buffers, want at most %d", live, maxBatches)
	}
	g.opened()
	a.checkExact(1 + rounds)
	b.checkExact(1 + rounds)
}
