package udpstream

import (
	"errors"
	"hash/maphash"
	"net/netip"
	"runtime"
	"sync/atomic"

	"github.com/edgerelay/relay/upstream"
)

// New sessions are opened off the read path. Opening one costs a socket,
// two buffer sizes, a connect, a poller registration and a goroutine
// (about a dozen system calls, tens of µs on a busy VM); done by a port's
// reader, a flood of new sources (50 000 in 1.2 s) kept the reader so busy
// that the listen socket's queue overflowed and established streams lost
// datagrams with the flood's. So the reader only admits a newcomer (ACL,
// per-source cap: cheap lookups), keeps a copy of its datagrams and queues
// it for setupLoop, which opens the session and sends what was kept. A
// relay runs one setupLoop per core, up to four: opening sessions is
// kernel work that scales over cores (TestSpoofedFlood on 2 cores, three
// runs each: 7 042, 4 573 and 10 890 sessions opened during the burst by
// one loop, 10 366, 24 132 and 23 738 by two). The queue is bounded: when it is full the newcomer
// is dropped (Drops.SetupBacklog), never a datagram of an open session, so
// a flood faster than sessions can be opened costs newcomers places, not
// established streams their datagrams.
//
// A source whose datagram was dropped for the backlog and that sends again
// (a real client retries or streams on; a spoofed source is seldom seen
// twice) is queued in a small lane of its own, which setupLoop serves
// first: a legitimate client gets in on its second datagram, however fast
// the flood (recentDrops).

const (
	// setupQueueLen bounds the newcomers waiting for a session. At the
	// ~30 µs a session took to open on the project's 2-core VM, a full
	// queue is ~15 ms of waiting; a longer one would only hold more
	// spoofed sources.
	setupQueueLen = 512
	// retryQueueLen bounds the lane of sources seen again after a drop.
	retryQueueLen = 64
	// pendingMaxDatagrams caps what is kept of one newcomer meanwhile. A
	// stream that starts needs two batches; an open stream needs more
	// after a binary upgrade, where it is a newcomer to the new process:
	// what it sent while that process was not reading yet waits in the
	// listen socket and is read in one go while its session opens. Sixteen
	// batches are half a second of 1 000 datagrams a second (an RTB stream
	// at 8 Mbit/s sends ~850). With two, TestZeroLossOperations lost 3 to
	// 60 datagrams as setup_backlog after an upgrade in 12 of 63 runs on a
	// loaded machine (backlogs of 67 to 124; TestNewcomerBacklogKept).
	// What all newcomers keep together is bounded in bytes (budget.go).
	pendingMaxDatagrams = 16 * batchSize
)

// pending is a newcomer waiting for setupLoop to open its session. While it
// waits it is in its port's pending table, and the port's reader adds the
// source's further datagrams to it.
type pending struct {
	p      *port
	client netip.AddrPort
	local  netip.Addr // the address the first datagram was sent to

	// Guarded by p.mu.
	data   [][]byte // payload copies, in arrival order; taken by setupLoop
	share  int      // their cost within the newcomer's share of Relay.kept
	pooled int      // and beyond it, from the pool (budget.go)
}

// keepLocked copies as many of b.msgs[i:j] into q as fit under q's cap and
// the relay's budget for waiting payload, and reports how many that was.
func (q *pending) keepLocked(b *batch, i, j int, budget *newcomerBudget) int {
	kept := 0
	for k := i; k < j && len(q.data) < pendingMaxDatagrams; k++ {
		if !budget.take(q, len(b.msgs[k].buf)+keptOverhead) {
			break
		}
		q.data = append(q.data, append([]byte(nil), b.msgs[k].buf...))
		kept++
	}
	return kept
}

// takeLocked hands over q's kept datagrams and gives their budget back.
func (q *pending) takeLocked(budget *newcomerBudget) [][]byte {
	data := q.data
	q.data = nil
	budget.giveBack(q)
	return data
}

// request admits src, the sender of b.msgs[i:j], as a newcomer and queues it
// for setupLoop, or counts the datagrams as dropped by the reason it was not.
// Only the port's reader calls it.
func (p *port) request(b *batch, i, j int) {
	r := p.r
	src, n := b.msgs[i].addr, uint64(j-i)
	drops := &r.stats.Drops
	if r.draining.Load() {
		drops.Draining.Add(n)
		return
	}
	// No negative cache for refused sources: Admit is an atomic load and a
	// prefix lookup (tens of ns), less than the recvmmsg cost of the
	// datagram itself, and asking every time means a reloaded ACL applies
	// at once and a spoofed flood of refused sources costs no memory.
	if r.admit != nil && !r.admit(src) {
		r.stats.Rejected.Add(1)
		drops.ACL.Add(n)
		return
	}
	lane := r.setups
	if r.recent.seen(src) {
		lane = r.retries
	}
	if len(lane) == cap(lane) { // checked first: a flood's drop costs no allocation
		r.backlogged(src, n)
		return
	}
	if r.limits.Acquire(src) != nil {
		drops.SourceLimit.Add(n)
		return
	}
	q := &pending{p: p, client: src, local: b.msgs[i].local}
	p.mu.Lock()
	kept := 0
	if !p.closed {
		kept = q.keepLocked(b, i, j, &r.kept)
	}
	if kept == 0 {
		p.mu.Unlock()
		r.limits.Release(src)
		r.backlogged(src, n)
		return
	}
	p.pending[src] = q // before the send: setupLoop may take it at once
	p.mu.Unlock()
	if over := n - uint64(kept); over > 0 {
		drops.SetupBacklog.Add(over)
	}
	select {
	case lane <- q:
	default: // another port's reader filled the lane meanwhile
		p.drop(q, nil)
		r.backlogged(src, uint64(kept))
	}
}

// backlogged counts n datagrams of src dropped because the sessions waiting
// to be opened filled the queue, and remembers src for a retry.
func (r *Relay) backlogged(src netip.AddrPort, n uint64) {
	r.stats.Drops.SetupBacklog.Add(n)
	r.recent.add(src)
}

// setupWorkers is how many setupLoops a relay runs.
func setupWorkers() int { return min(max(runtime.GOMAXPROCS(0), 1), 4) }

// setupLoop opens the sessions of queued newcomers, retries first, until
// the relay closes.
func (r *Relay) setupLoop() {
	defer r.wg.Done()
	for {
		var q *pending
		select {
		case q = <-r.retries:
		default:
			select {
			case q = <-r.retries:
			case q = <-r.setups:
			case <-r.done:
				return
			}
		}
		// A batch to send what the newcomer sent meanwhile, taken per
		// session and not held by the loop: a relay waiting for
		// newcomers holds no batch.
		b := r.net.newBatch()
		q.p.open(q, b)
		b.release()
	}
}

// dropQueued drops the newcomers still queued once the setupLoops have
// exited, giving back their places under the per-source cap: that count
// is shared with the relay's successors (held.go), where a place never
// given back would hold its source down for good.
func (r *Relay) dropQueued() {
	for {
		var q *pending
		select {
		case q = <-r.retries:
		case q = <-r.setups:
		default:
			return
		}
		q.p.drop(q, &r.stats.Drops.Draining)
	}
}

// open opens q's session and sends q's datagrams through it, or drops them
// by the reason it could not.
func (p *port) open(q *pending, b *batch) {
	r := p.r
	drops := &r.stats.Drops
	if r.draining.Load() {
		p.drop(q, &drops.Draining)
		return
	}
	if !r.takeSlot() {
		p.drop(q, &drops.SessionLimit)
		return
	}
	u, err := p.dial()
	if err != nil {
		r.sessionGone()
		if errors.Is(err, upstream.ErrAllDown) {
			p.drop(q, &drops.UpstreamDown) // the outage is logged once by r.ups
			return
		}
		c := p.drop(q, &drops.SessionError)
		if isPow2(c) {
			r.log.Warn().Err(err).Str("listener", r.name).Str("listen", p.listen).
				Stringer("client", q.client).Uint64("dropped", c).Msg("udp session not opened")
		}
		return
	}
	s := newSession(p, q.client, q.local, u, r.now())
	// Send what the client sent so far, then publish the session; what
	// arrives meanwhile is kept in q, so the order is the client's.
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = u.conn.close()
			r.sessionGone()
			p.drop(q, &drops.Draining)
			return
		}
		data := q.takeLocked(&r.kept)
		if len(data) == 0 {
			delete(p.pending, q.client)
			p.sessions[q.client] = s
			r.wg.Add(1) // under mu, so Close (which sets closed under mu) waits for it
			p.mu.Unlock()
			break
		}
		p.mu.Unlock()
		s.sendKept(b, data)
	}
	r.unconfirmed.push(s)
	r.stats.SessionsCreated.Add(1)
	go s.relayReplies()
}

// drop takes q out of its port's pending table, gives back its source's
// place under the per-source cap, and counts its datagrams in reason (nil:
// the caller counts). It returns reason's new value.
func (p *port) drop(q *pending, reason *atomic.Uint64) uint64 {
	p.mu.Lock()
	if p.pending[q.client] == q {
		delete(p.pending, q.client)
	}
	n := uint64(len(q.data))
	q.takeLocked(&p.r.kept)
	p.mu.Unlock()
	p.r.limits.Release(q.client)
	if reason == nil {
		return 0
	}
	return reason.Add(n)
}

// sendKept sends datagrams kept while the session was being opened, in
// batches of b's size.
func (s *session) sendKept(b *batch, data [][]byte) {
	for len(data) > 0 {
		n := min(len(data), len(b.msgs))
		for k := range n {
			m := &b.msgs[k]
			m.buf = append(m.buf[:0], data[k]...)
			m.truncated = false
		}
		b.n = n
		s.toUpstream(b, 0, n)
		data = data[n:]
	}
}

// recentSlots is the size of recentDrops' table: 256 KiB a relay. A mark
// survives until a later drop lands on its slot; at 30 000 drops a second
// (a flood faster than sessions open) nine in ten survive 200 ms and six
// in ten a second, the usual retry intervals.
const recentSlots = 1 << 16

// recentDrops remembers sources recently dropped for the backlog, by a
// 32-bit fingerprint in a slot chosen by a hash of the source: no lock, no
// allocation, fixed memory. A collision can only give a spoofed source the
// retry lane, which is bounded like the main queue.
type recentDrops struct {
	seed  maphash.Seed
	marks []atomic.Uint32
}

func newRecentDrops() recentDrops {
	return recentDrops{seed: maphash.MakeSeed(), marks: make([]atomic.Uint32, recentSlots)}
}

func (d *recentDrops) slot(src netip.AddrPort) (*atomic.Uint32, uint32) {
	h := maphash.Comparable(d.seed, src)
	return &d.marks[h%recentSlots], uint32(h>>32) | 1 // never 0, the empty mark
}

func (d *recentDrops) add(src netip.AddrPort) {
	m, v := d.slot(src)
	m.Store(v)
}

// seen reports whether src was dropped recently, and forgets it: one drop
// earns one place in the retry lane.
func (d *recentDrops) seen(src netip.AddrPort) bool {
	m, v := d.slot(src)
	return m.Load() == v && m.CompareAndSwap(v, 0)
}
