package udpstream

import (
	"errors"
	"math/bits"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// port is one listen socket with its session table.
type port struct {
	r      *Relay
	conn   packetConn
	listen string // bound address, for logs
	spec   string // the Config.Listen entry, to match a successor's
	index  int    // position in Config.Listen: the failover list of r.ups to use
	from   *port  // the predecessor's port on this address, if any (see Config.Replaces)

	// prev is where sessions this port has not got are looked up next: from,
	// or the oldest still open port of the chain behind it (see inherited).
	prev atomic.Pointer[port]
	// yielded says a successor reads this port's socket now: the reader
	// exits instead of retrying, and closes readerDone as it goes.
	yielded    atomic.Bool
	readerDone chan struct{}

	mu sync.Mutex // guards the following
	// sessions is keyed by the client's address and port as a value:
	// hashing a netip.AddrPort costs no allocation, a String() key would
	// cost one per datagram.
	sessions map[netip.AddrPort]*session
	// pending holds the newcomers queued for setupLoop (setup.go), so that
	// their further datagrams wait with them instead of queuing twice.
	pending map[netip.AddrPort]*pending
	closed  bool
	peak    int // the most sessions seen in the table by a sweep (shrink)
}

func newPort(r *Relay, c packetConn, index int) *port {
	return &port{r: r, conn: c, listen: c.localAddr().String(), index: index,
		sessions: make(map[netip.AddrPort]*session), pending: make(map[netip.AddrPort]*pending),
		readerDone: make(chan struct{})}
}

// readLoop reads the listen socket and forwards each batch upstream until
// the relay closes.
func (p *port) readLoop() {
	defer p.r.wg.Done()
	defer close(p.readerDone)
	var failures uint64
	for !p.yielded.Load() {
		b, err := p.conn.readBatch()
		if err != nil {
			if p.r.closing.Load() || p.yielded.Load() {
				return
			}
			// A listen socket has no peer to report errors; anything here
			// is local (ENOMEM, ENOBUFS). Log sparsely, back off, retry.
			failures++
			if isPow2(failures) {
				p.r.log.Warn().Err(err).Str("listener", p.r.name).Str("listen", p.listen).
					Uint64("failures", failures).Msg("udp listen socket read failed; retrying")
			}
			select {
			case <-p.r.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		p.forward(b)
		b.release()
	}
}

// forward sends a batch read from the listen socket to the sessions' upstream
// sockets. Consecutive datagrams from one client (the usual case: a stream)
// go out in one sendmmsg.
func (p *port) forward(b *batch) {
	now := p.r.now()
	for i := 0; i < b.n; {
		if b.msgs[i].truncated {
			p.r.stats.Drops.Truncated.Add(1)
			i++
			continue
		}
		src := b.msgs[i].addr
		j := i + 1
		for j < b.n && b.msgs[j].addr == src && !b.msgs[j].truncated {
			j++
		}
		end := j
		if r := p.r.rates; r != nil {
			end = i + r.Take(src, j-i) // the rest of the run is over the source's rate
			p.r.stats.Drops.SourceRate.Add(uint64(j - end))
		}
		if end > i {
			p.forwardRun(b, i, end, now)
		}
		i = j
	}
}

// forwardRun sends b.msgs[i:j], all from one source, to its session, or
// keeps them for the session being opened for the source.
func (p *port) forwardRun(b *batch, i, j int, now int64) {
	s := p.session(b, i, j)
	if s == nil {
		return
	}
	s.sentTo(b.msgs[i].local)
	if !s.confirmed.Load() && !s.sending.Load() {
		s.sending.Store(true) // a one-way stream, not a spoofed source: see evictOldest
	}
	if s.p == p {
		s.touchIn(now)
	} else {
		s.touchIn(s.p.r.now()) // a predecessor's session runs on its clock
	}
	s.toUpstream(b, i, j)
}

// session returns the session of b.msgs[i:j]'s source. For a source without
// one it returns nil: the datagrams are kept for the session being opened,
// or the source is queued for one (request), or they are dropped and
// counted.
func (p *port) session(b *batch, i, j int) *session {
	src := b.msgs[i].addr
	p.mu.Lock()
	s := p.sessions[src]
	if s == nil {
		if q := p.pending[src]; q != nil {
			if kept := q.keepLocked(b, i, j, &p.r.kept); kept < j-i {
				p.r.stats.Drops.SetupBacklog.Add(uint64(j - i - kept))
			}
			p.mu.Unlock()
			return nil
		}
	}
	p.mu.Unlock()
	if s != nil {
		return s
	}
	if s := p.inherited(src); s != nil {
		return s
	}
	p.request(b, i, j)
	return nil
}

// takeSlot takes a place in the session table: a free one (counting the
// sessions of the retired relays of the name, see held.go), or the place
// of the oldest unconfirmed session, evicted, its own or else a retired
// relay's. It reports false when every place is held by a confirmed
// session.
func (r *Relay) takeSlot() bool {
	if r.held.n.Add(1) <= r.maxSessions {
		r.stats.SessionsActive.Add(1)
		return true
	}
	r.held.n.Add(-1)
	if r.evictOldest(r) {
		return true // the evicted session's place, in SessionsActive already
	}
	if r.held.evictFor(r) {
		r.stats.SessionsActive.Add(1)
		return true
	}
	return false
}

// dial opens a socket connected to the first upstream of the port's list
// that is up (upstream.ErrAllDown: none is).
func (p *port) dial() (*sessionUpstream, error) {
	var last error
	cur := p.r.ups.Begin(p.index)
	for t := cur.Next(); t != nil; t = cur.Next() {
		c, err := p.r.net.dial(t.AddrPort())
		if err == nil {
			// A UDP connect proves nothing about the upstream; replies
			// and the background probes do.
			cur.Opened()
			return &sessionUpstream{conn: c, t: t, addr: t.AddrPort()}, nil
		}
		cur.Failed(err)
		last = err
	}
	if err := cur.Err(); err != nil {
		return nil, err
	}
	return nil, last
}

// expire removes the sessions that have been idle for timeout (unconfirmed
// ones: for unconfirmed) and appends them to out; the caller ends them
// outside the lock, for s.idleEnd. now is the sweep time.
//
// A session's stamp is the coarse clock, which may be stale by however late
// the sweeper ran, so its value is not trusted as a time: a changed stamp
// only says "traffic since the previous sweep", and the session counts as
// idle from this sweep on. A stamp taken just before the clock moved still
// carries the older value, so the caller adds one sweep period to timeout;
// a session then ends between its timeout and three sweep periods after it,
// never early.
//
// While the relay drains (a reload retired it, a binary upgrade's new
// process reads its sockets, or it shuts down) only the client's datagrams
// count: a session ends once its client has been quiet for timeout, even
// while the upstream still sends. Otherwise a session whose upstream
// streams on (a player's status to a client that moved to the new process
// after an upgrade, or is gone) never went idle, and the old relay drained
// only at hard_stop_after. What it costs: a client that only listens to a
// stream it asked for once loses it then, and its next datagram opens a
// session with the successor, which the upstream sees from another port;
// after an upgrade that is true of every client once the old process
// exits anyway. Such an end is logged as client_idle when the upstream
// still sent in the second half of the client's quiet (a stream, not the
// reply to the client's last datagram).
func (p *port) expire(now, timeout, unconfirmed int64, draining bool, out []*session) []*session {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.shrinkLocked()
	p.peak = max(p.peak, len(p.sessions))
	for k, s := range p.sessions {
		if stamp := s.last.Load(); stamp != s.seenStamp {
			s.seenStamp, s.quietFrom = stamp, now
		}
		if stamp := s.lastIn.Load(); stamp != s.seenIn {
			s.seenIn, s.clientQuietFrom = stamp, now
		}
		quietFrom := s.quietFrom
		if draining {
			quietFrom = s.clientQuietFrom
		}
		idle := timeout
		if !s.confirmed.Load() {
			idle = unconfirmed
		}
		if now-quietFrom < idle {
			continue
		}
		s.idleEnd = endIdle
		if now-s.quietFrom < idle/2 {
			s.idleEnd = endClientIdle
		}
		delete(p.sessions, k)
		out = append(out, s)
	}
	return out
}

// shrinkAbove is the fewest sessions whose table is worth shrinking.
const shrinkAbove = 256

// shrinkLocked moves the sessions to a table of their size once they are
// fewer than a quarter of the most it held: a Go map keeps the buckets of
// its largest size, so every port of a range that a flood once filled
// (MaxSessions, ~80 bytes a place) kept that memory for good
// (TestSessionTableShrinks).
func (p *port) shrinkLocked() {
	if p.peak <= shrinkAbove || len(p.sessions) >= p.peak/4 {
		return
	}
	m := make(map[netip.AddrPort]*session, len(p.sessions))
	for k, s := range p.sessions {
		m[k] = s
	}
	p.sessions, p.peak = m, len(m)
}

// remove deletes s from the table if it is still there.
func (p *port) remove(s *session) {
	p.mu.Lock()
	if p.sessions[s.client] == s {
		delete(p.sessions, s.client)
	}
	p.mu.Unlock()
}

// closeSessions stops the table from taking sessions and ends all of them.
func (p *port) closeSessions(reason string) {
	p.mu.Lock()
	p.closed = true
	all := make([]*session, 0, len(p.sessions))
	for _, s := range p.sessions {
		all = append(all, s)
	}
	clear(p.sessions)
	p.mu.Unlock()
	for _, s := range all {
		s.end(reason, nil)
	}
}

// isUnreachable reports the errors a connected UDP socket returns after an
// ICMP error: port or protocol unreachable, host or network unreachable,
// unknown or isolated (EHOSTDOWN, ENONET), or administratively prohibited
// (IPv4: EHOSTUNREACH; IPv6: EACCES, the answer of a firewall that
// rejects, firewalld's default). Plain host and network unreachable, the
// error of a failed ARP among them, come only because session sockets set
// IP_RECVERR (recverr_linux.go). Each says the upstream cannot be reached,
// so the session fails over; left out, an IPv6 upstream behind such a
// firewall ended every session as upstream_error and was never marked down
// (TestFailoverOnAdminProhibited).
func isUnreachable(err error) bool {
	for _, e := range [...]syscall.Errno{syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
		syscall.ENOPROTOOPT, syscall.EACCES, syscall.EHOSTDOWN, syscall.ENONET} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// isPow2 samples repeated events for logging: the 1st, 2nd, 4th, 8th ...
func isPow2(n uint64) bool { return n != 0 && bits.OnesCount64(n) == 1 }
