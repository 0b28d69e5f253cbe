package limit

import (
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// syncClock is a manual clock the sweep timer's goroutine may read while
// the test moves it.
type syncClock struct{ ns atomic.Int64 }

func (c *syncClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *syncClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newSyncClock() *syncClock {
	c := &syncClock{}
	c.ns.Store(time.Unix(1_700_000_000, 0).UnixNano())
	return c
}

// sourceN is the n-th of many distinct IPv4 sources.
func sourceN(n int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}), 40000)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, cond func() bool) bool {
	t.Helper()
	for end := time.Now().Add(within); ; time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// TestQuietTableForgetsFlood: a flood of one-off sources leaves each in
// rate debt, and then nothing more comes. Once their debts are paid they
// are forgotten within a sweep period, with no further connection to set
// the sweep off. Before, a table swept only when a new source came, so an
// edge box that a scan passed kept its sources (up to MaxSources per
// listener) until the next newcomer, which a quiet night may never bring.
func TestQuietTableForgetsFlood(t *testing.T) {
	clk := newSyncClock()
	tb := New(Config{MaxConns: 2, Rate: 1, Burst: 1, Now: clk.now})
	tb.src.every = 20 * time.Millisecond
	holder := sourceN(1 << 20) // keeps a connection throughout: never forgotten
	if err := tb.Acquire(holder); err != nil {
		t.Fatal(err)
	}
	const n = 20_000
	for i := range n {
		if err := tb.Acquire(sourceN(i)); err != nil {
			t.Fatalf("source %d: %v", i, err)
		}
		tb.Release(sourceN(i)) // in rate debt for a second: kept
	}
	if got := tb.Len(); got < n {
		t.Fatalf("Len = %d right after %d sources in rate debt, want them all tracked", got, n)
	}
	clk.advance(2 * time.Second) // every debt is paid; no source comes again
	if !eventually(t, 5*time.Second, func() bool { return tb.Len() == 1 }) {
		t.Fatalf("Len = %d after the flood went quiet and its debts were paid, want 1 (the holder)", tb.Len())
	}
	if got := tb.Conns(tb.Key(holder.Addr())); got != 1 {
		t.Fatalf("the holder's connections: %d, want 1", got)
	}
	tb.src.mu.Lock()
	armed := tb.src.armed
	tb.src.mu.Unlock()
	if armed {
		t.Fatal("the sweep timer runs on over a table of one source")
	}
}

// TestFloodGivesMemoryBack: 65 536 sources each hold a connection at once,
// then all end. Every source is forgotten at its Release, but a Go map
// keeps its buckets: 7 MiB stayed allocated for good. The sweep moves the
// survivors to a map of their size, so the heap comes back.
func TestFloodGivesMemoryBack(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes the heap; TestQuietTableForgetsFlood covers the counts")
	}
	const n = 65536
	base := heapAlloc()
	tb := New(Config{MaxConns: 1})
	tb.src.every = 20 * time.Millisecond
	for i := range n {
		if err := tb.Acquire(sourceN(i)); err != nil {
			t.Fatalf("source %d: %v", i, err)
		}
	}
	full := heapAlloc() - base
	for i := range n {
		tb.Release(sourceN(i))
	}
	if tb.Len() != 0 {
		t.Fatalf("Len = %d after every connection ended, want 0", tb.Len())
	}
	var held int64
	ok := eventually(t, 5*time.Second, func() bool {
		held = heapAlloc() - base
		return held < 256<<10
	})
	t.Logf("heap held by the table: %d KiB full, %d KiB after every source left", full>>10, held>>10)
	if !ok {
		t.Fatalf("the emptied table still holds %d KiB of heap (%d KiB full), want under 256 KiB", held>>10, full>>10)
	}
	runtime.KeepAlive(tb)
}

func heapAlloc() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
