package udpstream

import (
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
//   - Relay.held for MaxSessions: the sessions open on a relay and on the
//     relays of its name that it succeeded and that still drain. The
//     first Relay of a name makes it; each successor shares it; each
//     relay adds and takes off only its own sessions;
//   - the sources of the per-source limit.Table (limit.Config.Replaces),
//     which count each address's sessions. The datagram rate table
//     (PerSourceRate) shares its predecessor's sources the same way, so a
//     source that spent its burst does not get a fresh one from a reload.
//
// Sessions are counted when they open and end, never per datagram: the
// data path's cost does not change. Stats.SessionsActive stays each
// relay's own gauge (the metrics count the old relay's sessions as
// draining), and a relay evicts only its own unconfirmed sessions for a
// newcomer (conntrack.go).

// succeed takes over the counts of the relay of cfg's name among
// cfg.Replaces, if any, and makes fresh ones otherwise.
func (r *Relay) succeed(cfg *Config) {
	var prev *Relay
	for _, old := range cfg.Replaces {
		if old.name == cfg.Name {
			prev = old
		}
	}
	lim, rate := limit.Config{MaxConns: cfg.maxSessionsPerSource()}, limit.Config{Rate: cfg.PerSourceRate}
	r.held = new(atomic.Int64)
	if prev != nil {
		r.held = prev.held
		lim.Replaces, rate.Replaces = prev.limits, prev.rates // nil rates: counted from here on
	}
	r.limits, r.rates = limit.New(lim), newRates(rate)
}
