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
//     removed forgets the stamps. The new rate applies from TakeOver, when
//     the new listener serves: until then, and for good if the reload
//     fails, the stamps stay as the old Table charged them.
//
// Other prefix lengths would count other sources: a /24 cannot be split
// back into the addresses that made its count. Then the new Table starts
// empty and the old one keeps its own count until its connections end.

// TakeOver puts t's rate in force over the sources it shares with the
// Table it Replaces: their stamps, charged at the rate in force so far,
// are brought to t's. The owner calls it once t decides, when its
// listener starts serving, not when t is built: a reload that fails after
// building t (a port it cannot bind) leaves the Table in force deciding
// exactly as before. Without Replaces, or at the same rate, it does
// nothing; it is idempotent.
func (t *Table) TakeOver() {
	src := t.src
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.interval == t.interval && src.tolerance == t.tolerance {
		return
	}
	now := src.stamp()
	for k, s := range src.m {
		s.next = t.carried(s.next, now, src.interval)
		if idle(s, now) {
			delete(src.m, k)
			continue
		}
		src.m[k] = s
	}
	src.interval, src.tolerance = t.interval, t.tolerance
}

// carried converts a stamp charged at one connection per interval into one
// at t's rate: the connections spent ahead of the clock stay spent, up to
// t's burst.
func (t *Table) carried(next, now, interval int64) int64 {
	if t.interval == 0 || interval == 0 || next <= now {
		return 0
	}
	spent := float64(next-now) / float64(interval)
	burst := float64(t.tolerance+t.interval) / float64(t.interval)
	return now + int64(min(spent, burst)*float64(t.interval))
}
