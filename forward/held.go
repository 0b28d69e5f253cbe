package forward

import "sync/atomic"

// A reload that changes a listener retires it while its connections run
// on, and a new Listener of the same name accepts on its sockets. The
// limits hold across the swap: the new one counts the connections still
// open on the old one (and on any older one still draining) against its
// own MaxConns and PerSource, and each of them frees its place when it
// ends, whichever listener admitted it. Two counts are shared for that,
// each with one owner that every listener of the name writes to:
//
//   - Listener.held for MaxConns: the connections open on a listener and
//     on the listeners of its name that it succeeded and that still
//     drain. The first Listener of a name makes it; each successor
//     shares it; each listener adds and takes off only its own
//     connections;
//   - the sources of the PerSource limit.Table (limit.Config.Replaces),
//     shared when the successor has per-source limits too, its
//     predecessor had some and they cut sources at the same prefixes.
//
// Stats.Active stays each listener's own gauge: the metrics count the
// old listener's connections as draining.

// succeed takes over the counts of the listener of cfg's name among
// cfg.Replaces, if any, and makes fresh ones otherwise.
func (l *Listener) succeed(cfg *Config) {
	var prev *Listener
	for _, old := range cfg.Replaces {
		if old.cfg.Name == cfg.Name {
			prev = old
		}
	}
	l.held = new(atomic.Int64)
	if prev != nil {
		l.held = prev.held
		cfg.PerSource.Replaces = prev.limits // nil: counts from here on
	}
}
