package udpstream

import (
	"sync"
	"time"

	"github.com/edgerelay/relay/limit"
)

// A session table under a flood of spoofed sources behaves like the
// kernel's conntrack: a session whose upstream has not answered yet is
// unconfirmed. Unconfirmed sessions expire after UnconfirmedTimeout instead
// of SessionTimeout, and when the table is full the oldest of them is
// evicted to make room for a newcomer (passing over, once, one whose client
// keeps sending: see evictOldest); a confirmed session is never
// evicted. A flood that never gets answers therefore churns through the
// unconfirmed part of the table while every stream that was answered keeps
// its session, and a new legitimate client gets a place at once (and keeps
// it for as long as the flood needs to evict every older unconfirmed
// session first: MaxSessions / flood rate, 100 ms at 4 096 sessions and
// 40 000 spoofed sources a second, time enough for an upstream on a LAN to
// answer). On top of that, MaxSessionsPerSource caps the sessions of one
// source address (a spoofer varying only its ports).

// DefaultUnconfirmedTimeout is the zero value of Config.UnconfirmedTimeout.
const DefaultUnconfirmedTimeout = 5 * time.Second

// newRates returns the datagram rate limit per source address, nil for none.
func newRates(cfg limit.Config) *limit.Table {
	if cfg.Rate <= 0 {
		return nil
	}
	return limit.New(cfg)
}

// endEvicted is the access log's "end" for a session evicted for a newcomer.
const endEvicted = "evicted"

func (c *Config) unconfirmedTimeout() time.Duration {
	if c.UnconfirmedTimeout > 0 {
		return min(c.UnconfirmedTimeout, c.sessionTimeout())
	}
	return min(DefaultUnconfirmedTimeout, c.sessionTimeout())
}

// DefaultSessionsPerSource is the default of Config.MaxSessionsPerSource
// for a table of maxSessions: a sixteenth of it (256 of the default 4 096),
// at least one. An RTB encoder sending to all 127 ports from one address
// fits; a spoofer varying only its ports fills a sixteenth.
func DefaultSessionsPerSource(maxSessions int) int { return max(maxSessions/16, 1) }

func (c *Config) maxSessionsPerSource() int {
	if c.MaxSessionsPerSource > 0 {
		return c.MaxSessionsPerSource
	}
	return DefaultSessionsPerSource(c.maxSessions())
}

// unconfirmedQueue holds sessions in the order they were opened, for
// eviction oldest first. Sessions are not taken out when they are confirmed
// or end (that would need a search): the evictor skips them, and the
// sweeper drops them once per tick, so the queue holds at most the
// sessions opened within a tick plus those still unconfirmed.
type unconfirmedQueue struct {
	mu    sync.Mutex // guards the following
	queue []*session
	head  int // queue[:head] are taken
}

func (q *unconfirmedQueue) push(s *session) {
	q.mu.Lock()
	q.queue = append(q.queue, s)
	q.mu.Unlock()
}

// evictOldest ends the oldest session of r that is still unconfirmed,
// quiet and in its port's table, handing its place to a newcomer of to (r,
// or a successor of r's name: held.go): the shared count of sessions is
// not lowered when it finishes, nor SessionsActive if to is r. It reports
// whether it found one.
//
// Quiet: a session whose client sent again since it was queued, or since
// the evictor last passed it, goes to the back of the queue instead (a
// second chance, as in the CLOCK page-replacement scheme). A spoofed
// source sends once; the receiver of a one-way stream (a signage player)
// never answers, so its session never becomes confirmed, and without this
// the stream, opened before any flood, was the first session evicted and
// was evicted again every time the flood went round the table. A call
// passes over at most as many sessions as were queued when it began, so a
// table of nothing but streams still yields one.
func (r *Relay) evictOldest(to *Relay) bool {
	q := &r.unconfirmed
	q.mu.Lock()
	chances := len(q.queue) - q.head
	for q.head < len(q.queue) {
		s := q.queue[q.head]
		q.queue[q.head] = nil
		q.head++
		if s.confirmed.Load() || s.up.Load().conn.answered() {
			continue // answered: its reader will confirm it when it runs
		}
		if chances > 0 && s.sending.Swap(false) {
			chances--
			q.queue = append(q.queue, s)
			continue
		}
		if !s.p.take(s, to) {
			continue
		}
		q.mu.Unlock()
		// A session that had already ended by itself (its reader not yet
		// through finish) still hands on its place, but it was not
		// evicted: its one line and count keep the reason it ended for.
		if s.end(endEvicted, nil) {
			r.stats.SessionsEvicted.Add(1)
		}
		return true
	}
	q.mu.Unlock()
	return false
}

// compact drops the sessions that no longer need a place in the queue:
// confirmed, or ended. The sweeper calls it once per tick.
func (q *unconfirmedQueue) compact() {
	q.mu.Lock()
	defer q.mu.Unlock()
	kept := q.queue[:0]
	for _, s := range q.queue[q.head:] {
		if s != nil && !s.confirmed.Load() && !s.isEnded() {
			kept = append(kept, s)
		}
	}
	clear(q.queue[len(kept):])
	q.queue, q.head = kept, 0
	if cap(q.queue) > 1024 && len(q.queue) < cap(q.queue)/4 {
		q.queue = append([]*session(nil), q.queue...) // give back a flood's backlog
	}
}

// take removes s from the table if it is still there, reporting whether it
// was; the caller then owns its ending, and a newcomer of to its place.
// handedTo is set under mu: finish reads it after its own remove has
// taken mu, so it never also gives back the place the caller took.
func (p *port) take(s *session, to *Relay) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sessions[s.client] != s {
		return false
	}
	delete(p.sessions, s.client)
	s.handedTo.Store(to)
	return true
}
