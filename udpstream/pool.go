package udpstream

import (
	"slices"
	"sync"
	"time"
)

// batchTrimPeriod is how often a relay trims its pool (batchPool.trim): a
// batch unused for one to two periods is freed.
const batchTrimPeriod = time.Second

// maxFreeBatches caps the batches an uncapped pool keeps for reuse; one
// handed back beyond it is left to the collector.
const maxFreeBatches = 32

// maxBatches caps the batches of the batched path's pool, in use and free
// together: 8 of 32 × 64 KiB, 16 MiB, which is all the receive buffer
// memory a relay has, whatever its number of ports and sessions. Without
// a cap the number followed the goroutines holding one at once, and a
// burst on every port of an RTB range (127 readers woken together, on 2
// cores) made 3 to 6 batches in most runs but 37 to 63 in one of five
// (TestBurstHeap: 82 to 200 MiB of heap in use): readers that the
// collector or the scheduler parked while holding a batch left the
// others an empty pool, and each allocated one more. At most GOMAXPROCS
// holders run at a time; the others are parked in the middle of
// forwarding, or waiting for a socket to take their datagrams, so a
// reader that waits for one of their batches waits for the same thing a
// reader with a batch of its own waits for: CPU. Throughput over
// loopback was the same as without a cap (TestBurstBench: 0.97x the
// datagrams a second, 0.99x the CPU a datagram, medians of 21 paired
// rounds on a busy machine; BENCHMARKS.md, "UDP bursts on every port: a
// cap on the batch pool"). What it costs: when the sends of eight
// sessions wait for room at once (socket buffers full: a saturated
// link), every port's reader waits with them, where it used to wait only
// for its own (TestBatchesCappedWhileSendsStall); the kernel queues in
// the listen sockets meanwhile. The buffers stay 64 KiB: recvmmsg cannot
// tell a datagram's size before it fills a buffer, and a smaller one
// would cut the larger datagrams.
const maxBatches = 8

// Buffers is the receive buffers of the batched path, for the UDP relays of
// one process to share (Config.Buffers), so that all of them together hold
// at most maxBatches batches, 16 MiB, however many listeners, ports and
// sessions the config has, and a reload's successor and the relay it
// replaces hold no more than one of them. Make it with NewBuffers; there is
// nothing to close: every relay that draws on it frees the batches nobody
// took for a second, and frees those left free when it closes.
type Buffers struct {
	pool *batchPool
}

// NewBuffers returns an empty set of buffers; it allocates as relays read.
func NewBuffers() *Buffers {
	return &Buffers{pool: newBatchPool(batchSize, maxBatches)}
}

// BufferUse is what a Buffers holds now, in bytes of receive buffer (2 MiB
// a batch; the headers beside them are not counted).
type BufferUse struct {
	InUse int64 // in batches readers hold: read and not yet forwarded
	Free  int64 // in batches kept for the next reads; a batch no read takes for 1 to 2 s is freed
	Limit int64 // the cap on InUse and Free together
}

// Use reports what b holds now; the admin endpoint shows it.
func (b *Buffers) Use() BufferUse {
	bp := b.pool
	bp.mu.Lock()
	live, free := bp.live, len(bp.free)
	bp.mu.Unlock()
	per := int64(bp.size) * msgBufSize
	return BufferUse{InUse: int64(live-free) * per, Free: int64(free) * per, Limit: int64(bp.max) * per}
}

// batchPool hands out batches of one size. The pool is what bounds buffer
// memory: a batch is held only between a read that found data and the end of
// forwarding it, so the number in use follows the number of goroutines busy
// forwarding, not the number of sessions or listen ports, and a capped pool
// (max) bounds it: a reader that finds every batch in use waits for one to
// be handed back, oldest waiter first.
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
	max     int        // batches at once, in use and free; zero: no cap
	allocMu sync.Mutex // held while allocating: see tryGet

	mu   sync.Mutex // guards the following
	free []*batch   // most recently handed back last
	low  int        // the fewest batches free since the last trim: free[:low] went unused
	live int        // batches allocated and not left to the collector, in use or free
	peak int        // the most live at once, for tests
	// trimmed is when trimDue last trimmed: the relays sharing a pool
	// (Buffers) each call it once a period.
	trimmed time.Time
	// waiting holds a channel per get waiting for a batch, oldest first;
	// put hands its batch to the first, so a reader that keeps finding
	// batches free cannot starve one that waits.
	waiting []chan *batch
}

// newBatchPool returns a pool of batches of size messages, at most max at
// once (zero: no cap). A pool whose users hold a batch while they wait for
// a datagram (netConn) must not be capped.
func newBatchPool(size, max int) *batchPool {
	return &batchPool{size: size, max: max}
}

// get takes a batch, waiting for one to be handed back if the pool is at
// its cap.
func (bp *batchPool) get() *batch {
	for {
		if b := bp.tryGet(); b != nil {
			return b
		}
		bp.mu.Lock()
		if len(bp.free) == 0 && bp.max > 0 && bp.live >= bp.max {
			ch := make(chan *batch, 1)
			bp.waiting = append(bp.waiting, ch)
			bp.mu.Unlock()
			return <-ch
		}
		bp.mu.Unlock() // handed back or trimmed meanwhile: try again
	}
}

// tryGet takes a free batch, or allocates one when none is free and the
// cap allows; it returns nil when every batch the cap allows is in use.
// Allocation is serialized and looks at the free list again once it has the
// lock: a 2 MiB allocation can let the scheduler run other readers, and
// without the lock each of them allocated a batch of its own while the
// first was still being made (127 at once for a range of 127 ports).
func (bp *batchPool) tryGet() *batch {
	if b, _ := bp.take(false); b != nil {
		return b
	}
	bp.allocMu.Lock()
	defer bp.allocMu.Unlock()
	b, grow := bp.take(true)
	if grow {
		b = bp.alloc()
	}
	return b
}

// take pops a free batch. Without one, and with reserve set, it reports
// whether the cap allows one more, counting it as live already.
func (bp *batchPool) take(reserve bool) (b *batch, grow bool) {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	if n := len(bp.free); n > 0 {
		b = bp.free[n-1]
		bp.free[n-1] = nil
		bp.free = bp.free[:n-1]
		bp.low = min(bp.low, n-1)
		return b, false
	}
	if !reserve || (bp.max > 0 && bp.live >= bp.max) {
		return nil, false
	}
	bp.live++
	bp.peak = max(bp.peak, bp.live)
	return nil, true
}

// put hands b to the oldest waiting get, or keeps it for the next one.
func (bp *batchPool) put(b *batch) {
	bp.mu.Lock()
	if len(bp.waiting) > 0 {
		ch := bp.waiting[0]
		bp.waiting = slices.Delete(bp.waiting, 0, 1)
		bp.mu.Unlock()
		ch <- b // buffered for this one batch: never blocks
		return
	}
	if len(bp.free) < maxFreeBatches {
		bp.free = append(bp.free, b)
	} else {
		bp.live--
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
	bp.live -= unused
}

// releaseFree frees every batch kept free. A relay that closes calls it:
// the trims that free unused batches are its sweep's, and with the last
// UDP listener of a process gone (a reload removed it) nothing would trim
// the batches it left free. A relay that shares the pool and still reads
// allocates again at its next read.
func (bp *batchPool) releaseFree() {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	bp.live -= len(bp.free)
	clear(bp.free)
	bp.free = bp.free[:0]
	bp.low = 0
}

// trimDue trims the pool unless it was trimmed less than three quarters of
// a period ago (by another relay that shares it), so that a batch goes
// unused for a full period before it is freed however many relays call.
func (bp *batchPool) trimDue(now time.Time) {
	bp.mu.Lock()
	due := now.Sub(bp.trimmed) >= batchTrimPeriod*3/4
	if due {
		bp.trimmed = now
	}
	bp.mu.Unlock()
	if due {
		bp.trim()
	}
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
