package udpstream

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgerelay/relay/upstream"
)

// Why a session ended, the "end" field of its access-log line.
const (
	endIdle          = "idle"           // SessionTimeout passed without traffic either way
	endShutdown      = "shutdown"       // the relay was closed
	endUpstreamError = "upstream_error" // the upstream socket failed (the "error" field says how)
	// endClientIdle: the relay was draining and the client sent nothing for
	// SessionTimeout, while the upstream still sent (see port.expire).
	endClientIdle = "client_idle"
)

// sessionUpstream is a session's socket connected to one upstream address.
type sessionUpstream struct {
	conn packetConn
	t    *upstream.Target // its health, shared with the listener's other sessions
	addr netip.AddrPort
}

// session is one client of one listen port. The port's reader forwards the
// client's datagrams through toUpstream; the session's own goroutine,
// relayReplies, forwards what the upstream sends back.
type session struct {
	p       *port
	client  netip.AddrPort
	started time.Time

	// up is replaced on failover, so it is read atomically by both
	// directions; replacing it closes the old socket.
	up atomic.Pointer[sessionUpstream]
	// local is the address the client last sent to, the replies' source
	// (zero: the route's choice). Written by the port's reader only when
	// it changes, so the pointer costs an allocation per change, not per
	// datagram.
	local atomic.Pointer[netip.Addr]
	// last is the relay's coarse clock at the latest datagram either way.
	// The sweeper only watches it change (see port.expire), so a clock
	// that lags when the sweeper runs late never ends a busy session.
	last atomic.Int64
	// lastIn is the coarse clock at the client's latest datagram. A
	// draining relay watches only this one (see port.expire).
	lastIn atomic.Int64

	// confirmed is set by the first datagram the upstream sends back; an
	// unconfirmed session expires sooner and may be evicted (conntrack.go).
	confirmed atomic.Bool
	// handedTo is set when an eviction gave the session's place to a
	// newcomer of that relay: its end then leaves the shared count of
	// sessions alone, and SessionsActive too if it is the session's own.
	handedTo atomic.Pointer[Relay]
	// sending is set by the client's datagrams while the session is
	// unconfirmed, and cleared by the evictor as it passes the session
	// over for a quiet one (conntrack.go).
	sending atomic.Bool

	// Owned by the sweeper, read and written under the port's mu.
	seenStamp int64 // last as of the previous sweep; -1 before the first
	quietFrom int64 // sweep time since which the session has been idle
	// The same for lastIn: the client's quiet, which alone counts while
	// the relay drains.
	seenIn, clientQuietFrom int64
	// idleEnd is why expire ended the session (endIdle or endClientIdle);
	// the sweeper reads it once the session is out of the table.
	idleEnd string

	// Counters for the access log; "in" is client → upstream.
	datagramsIn, bytesIn, datagramsOut, bytesOut atomic.Uint64

	mu     sync.Mutex // guards the following
	ended  bool
	reason string
	err    error
}

func newSession(p *port, client netip.AddrPort, local netip.Addr, u *sessionUpstream, now int64) *session {
	s := &session{p: p, client: client, started: time.Now(), seenStamp: -1, seenIn: -1}
	s.local.Store(&local)
	s.up.Store(u)
	s.last.Store(now)
	s.lastIn.Store(now)
	return s
}

// sentTo records the address the client's latest datagram was sent to.
func (s *session) sentTo(local netip.Addr) {
	if *s.local.Load() != local {
		changed := local // escapes only here: no allocation while it stays the same
		s.local.Store(&changed)
	}
}

// touch records traffic. It writes only when the coarse clock has moved, so
// the two directions do not bounce the cache line on every batch.
func (s *session) touch(now int64) {
	if s.last.Load() != now {
		s.last.Store(now)
	}
}

// touchIn records a datagram from the client: traffic for a draining relay
// too.
func (s *session) touchIn(now int64) {
	s.touch(now)
	if s.lastIn.Load() != now {
		s.lastIn.Store(now)
	}
}

// toUpstream sends b.msgs[i:j], all from this session's client, upstream.
func (s *session) toUpstream(b *batch, i, j int) {
	st := &s.p.r.stats
	retried := false
	for i < j {
		u := s.up.Load()
		n, err := u.conn.writeBatch(b, i, j)
		if n > 0 {
			bytes := payloadBytes(b, i, i+n)
			s.datagramsIn.Add(uint64(n))
			s.bytesIn.Add(bytes)
			st.DatagramsIn.Add(uint64(n))
			st.BytesIn.Add(bytes)
			i += n
			retried = false
		}
		if err == nil {
			return
		}
		if s.up.Load() != u {
			// The session's reader moved it to another upstream while
			// this send was under way, and closed u: the datagram was
			// not sent, and goes to the new one.
			retried = false
			continue
		}
		if isUnreachable(err) && !retried {
			// The kernel reports an ICMP error that arrived for an
			// earlier datagram on the next call; this datagram was
			// not sent. Move if the list allows, else send it again.
			st.Drops.Unreachable.Add(1)
			s.moveFrom(u, err)
			retried = true
			continue
		}
		st.Drops.SendError.Add(1)
		i++
		retried = false
	}
}

// relayReplies forwards what the upstream sends to the client, from the
// listen socket the client sent to, until the session ends.
func (s *session) relayReplies() {
	defer s.finish()
	st := &s.p.r.stats
	for {
		u := s.up.Load()
		b, err := u.conn.readBatch()
		if err != nil {
			if s.isEnded() {
				return
			}
			if s.up.Load() != u {
				continue // moved to another upstream; read the new socket
			}
			if isUnreachable(err) {
				st.Drops.Unreachable.Add(1)
				s.moveFrom(u, err)
				continue
			}
			s.end(endUpstreamError, err)
			return
		}
		s.touch(s.p.r.now())
		if !s.confirmed.Load() {
			s.confirmed.Store(true)
		}
		s.toClient(b)
		b.release()
	}
}

// toClient sends a batch read from the upstream socket to the client.
func (s *session) toClient(b *batch) {
	st := &s.p.r.stats
	local := *s.local.Load()
	for k := 0; k < b.n; k++ {
		b.msgs[k].addr, b.msgs[k].local = s.client, local
	}
	for i := 0; i < b.n; {
		if b.msgs[i].truncated {
			st.Drops.Truncated.Add(1)
			i++
			continue
		}
		j := i + 1
		for j < b.n && !b.msgs[j].truncated {
			j++
		}
		for i < j {
			n, err := s.p.conn.writeBatch(b, i, j)
			if n > 0 {
				bytes := payloadBytes(b, i, i+n)
				s.datagramsOut.Add(uint64(n))
				s.bytesOut.Add(bytes)
				st.DatagramsOut.Add(uint64(n))
				st.BytesOut.Add(bytes)
				i += n
			}
			if err != nil {
				st.Drops.SendError.Add(1)
				i++
			}
		}
	}
}

// moveFrom marks upstream u down (it was reported unreachable: why) and
// moves the session to the first upstream of the port's list that is up,
// if that is another one. It reports whether the session is on another
// upstream afterwards. With every upstream down the session stays where it
// is, and its datagrams keep drawing ICMP errors until one comes back.
func (s *session) moveFrom(u *sessionUpstream, why error) bool {
	u.t.Failed(why)
	nu, err := s.p.dial()
	if err != nil {
		return false
	}
	if nu.t == u.t {
		_ = nu.conn.close()
		return false
	}
	s.mu.Lock()
	if s.ended || s.up.Load() != u {
		moved := !s.ended
		s.mu.Unlock()
		_ = nu.conn.close()
		return moved
	}
	s.up.Store(nu)
	s.mu.Unlock()
	_ = u.conn.close()
	s.p.r.stats.Failovers.Add(1)
	return true
}

// end marks the session ended for reason and closes its upstream socket,
// which stops relayReplies. Only the first call counts; it reports whether
// this was it.
func (s *session) end(reason string, err error) bool {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return false
	}
	s.ended, s.reason, s.err = true, reason, err
	u := s.up.Load()
	s.mu.Unlock()
	_ = u.conn.close()
	return true
}

func (s *session) isEnded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

// finish runs when relayReplies returns: it takes the session out of the
// table, writes its access-log line and gives back its slot.
func (s *session) finish() {
	p := s.p
	r := p.r
	p.remove(s)
	s.mu.Lock()
	reason, err := s.reason, s.err
	s.mu.Unlock()
	if reason == endIdle || reason == endClientIdle {
		r.stats.SessionsExpired.Add(1)
	}
	// A session the upstream never answered is what a spoofed flood is
	// made of: its end is a debug line, or a flood would flood the log.
	ev := r.log.Info()
	if !s.confirmed.Load() {
		ev = r.log.Debug()
	}
	if err != nil {
		ev = r.log.Warn().Err(err)
	}
	ev.Str("listener", r.name).
		Str("listen", p.listen).
		Stringer("client", s.client).
		Stringer("upstream", s.up.Load().addr).
		Uint64("datagrams_in", s.datagramsIn.Load()).
		Uint64("bytes_in", s.bytesIn.Load()).
		Uint64("datagrams_out", s.datagramsOut.Load()).
		Uint64("bytes_out", s.bytesOut.Load()).
		Dur("duration_ms", time.Since(s.started)).
		Str("end", reason).
		Bool("confirmed", s.confirmed.Load()).
		Msg("udp session ended")
	if r.limits != nil {
		r.limits.Release(s.client)
	}
	switch to := s.handedTo.Load(); to {
	case nil:
		r.sessionGone()
	case r: // the place went to a newcomer here, counted in SessionsActive as it was
	default:
		r.activeGone() // a successor counts the place in its SessionsActive
	}
	r.wg.Done()
}

// payloadBytes sums the payload sizes of b.msgs[i:j].
func payloadBytes(b *batch, i, j int) uint64 {
	var n uint64
	for k := i; k < j; k++ {
		n += uint64(len(b.msgs[k].buf))
	}
	return n
}
