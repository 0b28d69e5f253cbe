package udpstream

import "sync/atomic"

// What the port readers keep for newcomers while their sessions open
// (setup.go) is bounded in bytes, so that a flood of newcomers cannot take
// the relay's memory whatever their datagrams' sizes. The bound has to fit
// a binary upgrade too, where every open stream is a newcomer to the new
// process at once, with what it sent while that process was not reading
// yet. A single 4 MiB over all newcomers held about 27 datagrams of
// 1 200 bytes a stream for 128 streams, and first come, first served: the
// streams read first kept all of theirs, the ones read last lost all of
// theirs (TestUpgradeManyStreams: 4 788 of 8 192 dropped as setup_backlog,
// 73 streams with nothing kept). So each newcomer has a share of its own,
// and only beyond it draws on a pool all newcomers share:
//
//   - a share is pendingShareBytes, about 210 datagrams of 1 200 bytes, a
//     quarter second of an 8 Mbit/s RTB stream (after an upgrade on a
//     loaded machine a stream's backlog was 67 to 124 datagrams);
//   - the shares in use are at most one per listen port (a stream a port,
//     as RTB's 127), at least minShares and at most maxShares: a range of
//     127 ports keeps up to 32 MiB in shares, a single port 4 MiB. A port
//     with many streams (more newcomers than shares) gives out the shares
//     first come, first served, as the single budget did;
//   - beyond its share a newcomer keeps what the pool of pendingPoolBytes
//     has left, up to pendingMaxDatagrams (one fast stream's half second).
//
// A relay so keeps at most shares × pendingShareBytes + pendingPoolBytes:
// 8 MiB for one port, 36 MiB for 128 ports and more, which is 38 MiB of
// live heap with 1 200-byte datagrams (TestNewcomerBudget logs it). The
// kernel already holds up to read_buffer (4 MiB) per listen port of such a
// backlog. A flood of spoofed sources sends a datagram a source and keeps
// little; only bursts from as many sources as there are shares fill it.

const (
	pendingShareBytes = 256 << 10
	pendingPoolBytes  = 4 << 20
	minShares         = 16
	maxShares         = 128
	// keptOverhead is what a kept datagram costs besides its payload (its
	// slice header and allocation), so that empty datagrams are not free.
	keptOverhead = 32
)

// newcomerBudget counts what is kept for a relay's newcomers, each datagram
// at its payload size plus keptOverhead.
type newcomerBudget struct {
	sharesMax int64        // bytes all shares may hold together
	shares    atomic.Int64 // bytes kept within their newcomer's share
	pool      atomic.Int64 // bytes kept beyond it, at most pendingPoolBytes
}

// newNewcomerBudget returns the budget of a relay of ports listen ports.
func newNewcomerBudget(ports int) newcomerBudget {
	return newcomerBudget{sharesMax: int64(min(max(ports, minShares), maxShares)) * pendingShareBytes}
}

// take charges cost for one more datagram of q, from q's share while it
// lasts and from the pool after, and reports whether there was room. The
// caller holds q's port's mu.
func (b *newcomerBudget) take(q *pending, cost int) bool {
	c := int64(cost)
	if q.share+cost <= pendingShareBytes {
		if b.shares.Add(c) <= b.sharesMax {
			q.share += cost
			return true
		}
		b.shares.Add(-c)
	}
	if b.pool.Add(c) <= pendingPoolBytes {
		q.pooled += cost
		return true
	}
	b.pool.Add(-c)
	return false
}

// giveBack returns what q holds. The caller holds q's port's mu.
func (b *newcomerBudget) giveBack(q *pending) {
	b.shares.Add(-int64(q.share))
	b.pool.Add(-int64(q.pooled))
	q.share, q.pooled = 0, 0
}

// inUse is what is kept now, in bytes.
func (b *newcomerBudget) inUse() int64 { return b.shares.Load() + b.pool.Load() }
