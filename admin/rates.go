package admin

import (
	"sync"
	"time"
)

// rateWindow is how far back the page's rates look.
const rateWindow = 10 * time.Second

// rates turns the counters of successive status reads into per-second
// rates over about rateWindow. It keeps what the reads saw, at most one
// sample a second, so nothing runs in the background and a busy poller
// cannot grow it: the first read after a quiet spell has no rates yet.
type rates struct {
	mu      sync.Mutex // guards the following
	samples []sample   // oldest first, spanning a little over rateWindow
}

// sample is the counters of every listener at one read.
type sample struct {
	at     time.Time
	counts map[string]rateCounts
}

type rateCounts struct{ conns, up, down uint64 }

func countsOf(s Snapshot) rateCounts {
	c := rateCounts{up: s.BytesToUpstream, down: s.BytesToClient}
	if s.Conns != nil {
		c.conns += s.Conns.Accepted
	}
	if s.UDP != nil {
		c.conns += s.UDP.SessionsCreated
	}
	return c
}

// fill sets Rates on each listener from the sample closest to rateWindow
// ago, and records now's counts.
func (r *rates) fill(now time.Time, listeners []Snapshot) {
	cur := sample{at: now, counts: make(map[string]rateCounts, len(listeners))}
	for _, s := range listeners {
		cur.counts[s.Listener] = countsOf(s)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if base, ok := r.baseLocked(now); ok {
		dt := now.Sub(base.at).Seconds()
		for i := range listeners {
			was, seen := base.counts[listeners[i].Listener]
			is := cur.counts[listeners[i].Listener]
			if !seen || is.conns < was.conns || is.up < was.up || is.down < was.down {
				continue // new, or counters started over: no honest rate
			}
			listeners[i].Rates = &Rates{
				Seconds:         dt,
				Connections:     float64(is.conns-was.conns) / dt,
				BytesToUpstream: float64(is.up-was.up) / dt,
				BytesToClient:   float64(is.down-was.down) / dt,
			}
		}
	}
	if n := len(r.samples); n == 0 || now.Sub(r.samples[n-1].at) >= time.Second {
		r.samples = append(r.samples, cur)
	}
	// Drop samples that a newer one past the window makes useless.
	for len(r.samples) > 1 && now.Sub(r.samples[1].at) >= rateWindow {
		r.samples = r.samples[1:]
	}
}

// baseLocked returns the newest sample at least rateWindow old, or else the
// oldest one if it is at least a second old.
func (r *rates) baseLocked(now time.Time) (sample, bool) {
	for i := len(r.samples) - 1; i >= 0; i-- {
		if now.Sub(r.samples[i].at) >= rateWindow {
			return r.samples[i], true
		}
	}
	if len(r.samples) > 0 && now.Sub(r.samples[0].at) >= time.Second {
		return r.samples[0], true
	}
	return sample{}, false
}
