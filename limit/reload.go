package limit

// A reload replaces a listener's Table while the old listener's
// connections run on. The new Table shares the old one's sources
// (Config.Replaces), so:
//
//   - a source's open connections, wherever admitted, count against the
//     new MaxConns: a lower one refuses the source until enough of them
//     end, a higher one admits at once;
//   - the old listener releases its connections into the same count, once
//     each, so the count comes back to zero when all have ended;
//   - each source's rate allowance carries over. With the same Rate and
//     Burst it is exactly as it was. With another, what the source has
//     spent and not yet earned back is kept as a number of connections,
//     earned back at the new Rate and capped at the new Burst: a source
//     that had just used its whole burst has used the new one too, and a
//     reload is no way to a fresh burst (nor to a wait longer than the new
//     Burst takes to refill). A rate added by the reload starts full; one
//     removed forgets the stamps.
//
// Other prefix lengths would count other sources: a /24 cannot be split
// back into the addresses that made its count. Then the new Table starts
// empty and the old one keeps its own count until its connections end.

// takeOver makes t share old's sources and brings their rate stamps to
// t's rate.
func (t *Table) takeOver(old *Table) {
	src := old.src
	t.src = src
	if old.interval == t.interval && old.tolerance == t.tolerance {
		return
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	now := src.stamp()
	for k, s := range src.m {
		s.next = t.carried(s.next, now, old)
		if idle(s, now) {
			delete(src.m, k)
			continue
		}
		src.m[k] = s
	}
}

// carried converts a stamp charged at old's rate into one at t's: the
// connections spent ahead of the clock stay spent, up to t's burst.
func (t *Table) carried(next, now int64, old *Table) int64 {
	if t.interval == 0 || old.interval == 0 || next <= now {
		return 0
	}
	spent := float64(next-now) / float64(old.interval)
	burst := float64(t.tolerance+t.interval) / float64(t.interval)
	return now + int64(min(spent, burst)*float64(t.interval))
}
