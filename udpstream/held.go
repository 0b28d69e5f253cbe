package udpstream

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/edgerelay/relay/limit"
)

// A reload that changes a UDP listener retires its relay while the old
// sessions run on (handover.go), and a new Relay of the same name reads
// its sockets. The session limits hold across the swap: the new relay
// counts the sessions still open on the old one (and on any older one
// still draining) against its own MaxSessions and MaxSessionsPerSource,
// and each of them gives its places back once when it ends, whichever
// relay opened it. Two counts are shared for that, each with one owner
// that every relay of the name writes to:
//
//   - Relay.held for MaxSessions: the sessions open on the relays of the
//     name that are not closed yet. The first Relay of a name makes it;
//     each successor shares it; each relay adds and takes off only its
//     own sessions;
//   - the sources of the per-source limit.Table (limit.Config.Replaces),
//     which count each address's sessions. The datagram rate table
//     (PerSourceRate) shares its predecessor's sources the same way, so a
//     source that spent its burst does not get a fresh one from a reload.
//
// Sessions are counted when they open and end, never per datagram: the
// data path's cost does not change. Stats.SessionsActive stays each
// relay's own gauge (the metrics count the old relay's sessions as
// draining).
//
// Eviction reaches across too: when the table is full and the relay has
// no unconfirmed session to evict for a newcomer, it evicts the oldest
// unconfirmed one of a retired relay of the name (conntrack.go). Without
// that, a reload under a spoofed flood would leave the new relay no place
// to give until the old relay's flood sessions expired.

// heldSessions is the count of sessions open on the relays of one name,
// and those relays, for eviction.
type heldSessions struct {
	n atomic.Int64

	mu     sync.Mutex // guards the following
	relays []*Relay   // not closed yet, oldest first
}

// succeed takes over the counts of the relay of cfg's name among
// cfg.Replaces, if any, and makes fresh ones otherwise. The relay joins
// the count's relays once it is bound (join).
func (r *Relay) succeed(cfg *Config) {
	var prev *Relay
	for _, old := range cfg.Replaces {
		if old.name == cfg.Name {
			prev = old
		}
	}
	lim, rate := limit.Config{MaxConns: cfg.maxSessionsPerSource()}, limit.Config{Rate: cfg.PerSourceRate}
	r.held = new(heldSessions)
	if prev != nil {
		r.held = prev.held
		lim.Replaces, rate.Replaces = prev.limits, prev.rates // nil rates: counted from here on
	}
	r.limits, r.rates = limit.New(lim), newRates(rate)
}

// join adds r to the relays of its count; Close takes it out (leave).
func (h *heldSessions) join(r *Relay) {
	h.mu.Lock()
	h.relays = append(h.relays, r)
	h.mu.Unlock()
}

func (h *heldSessions) leave(r *Relay) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if i := slices.Index(h.relays, r); i >= 0 {
		h.relays = slices.Delete(h.relays, i, i+1) // which clears the tail: r can go
	}
}

// evictFor evicts the oldest unconfirmed session of another relay of the
// name, oldest relay first, handing its place to r. It reports whether it
// found one.
func (h *heldSessions) evictFor(r *Relay) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, q := range h.relays {
		if q != r && q.evictOldest(r) {
			return true
		}
	}
	return false
}
