package udpstream

import (
	"runtime"
	"testing"
)

// keepRounds has each of qs keep up to each datagrams of size bytes under
// budget, in rounds of a batch per newcomer (all at once if roundRobin is
// false: the first newcomer read keeps all of its first).
func keepRounds(qs []*pending, budget *newcomerBudget, each, size int, roundRobin bool) {
	b := &batch{msgs: make([]message, batchSize)}
	payload := make([]byte, size)
	for k := range b.msgs {
		b.msgs[k].buf = payload
	}
	offered := make([]int, len(qs))
	for more := true; more; {
		more = false
		for i, q := range qs {
			for offered[i] < each {
				n := min(each-offered[i], batchSize)
				q.keepLocked(b, 0, n, budget)
				offered[i] += n
				if roundRobin {
					break
				}
			}
			more = more || offered[i] < each
		}
	}
}

// TestNewcomerBudget: every newcomer keeps its share whatever the others
// read before it, what all keep stays within the shares (one per port,
// between minShares and maxShares) and the pool, and taking what was kept
// gives all of it back. The log gives the live heap of a full budget of
// RTB datagrams (without -race).
func TestNewcomerBudget(t *testing.T) {
	const size = 1200
	cost := size + keptOverhead
	share := pendingShareBytes / cost
	for _, tc := range []struct {
		name                  string
		ports, newcomers      int
		roundRobin            bool
		wantShares, wantEvery int // shares in use at the end; datagrams every newcomer keeps
	}{
		{"rtb range, read in turns", 128, 128, true, 128, share},
		{"rtb range, first read first", 128, 128, false, 128, share},
		{"more newcomers than ports", 128, 300, true, 128, 0},
		{"one port", 1, 16, false, minShares, share},
		{"range beyond the cap", 1000, 128, false, maxShares, share},
	} {
		t.Run(tc.name, func(t *testing.T) {
			budget := newNewcomerBudget(tc.ports)
			qs := make([]*pending, tc.newcomers)
			for i := range qs {
				qs[i] = &pending{}
			}
			heap := liveHeap()
			keepRounds(qs, &budget, pendingMaxDatagrams, size, tc.roundRobin)
			grown := liveHeap() - heap
			kept, least := 0, pendingMaxDatagrams
			for _, q := range qs {
				kept += len(q.data)
				least = min(least, len(q.data))
			}
			if least < tc.wantEvery {
				t.Errorf("a newcomer kept %d datagrams, want every one at least %d", least, tc.wantEvery)
			}
			bound := int64(tc.wantShares*pendingShareBytes + pendingPoolBytes)
			if in := budget.inUse(); in > bound || in <= bound-int64((tc.wantShares+1)*cost) || in != int64(kept*cost) {
				t.Errorf("%d bytes in use for %d datagrams, want %d (all but a rest of each share and the pool of %d)",
					in, kept, kept*cost, bound)
			}
			if !raceEnabled && tc.ports == 128 {
				t.Logf("%d datagrams of %d bytes kept, budget %d KiB: live heap %+d KiB", kept, size, budget.inUse()>>10, grown>>10)
			}
			for _, q := range qs {
				q.takeLocked(&budget)
			}
			if in := budget.inUse(); in != 0 {
				t.Errorf("%d bytes still in use after every newcomer's datagrams were taken", in)
			}
			runtime.KeepAlive(qs)
		})
	}
}

// liveHeap is the heap in use after a collection, in bytes. The second
// collection empties sync.Pool's victim cache.
func liveHeap() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
