package limit

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// holding returns a Table for cfg whose source 127.0.0.2 holds n
// connections, and their client addresses.
func holding(t *testing.T, cfg Config, n int) (*Table, []netip.AddrPort) {
	t.Helper()
	tb := New(cfg)
	var held []netip.AddrPort
	for i := range n {
		c := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), uint16(1000+i))
		if err := tb.Acquire(c); err != nil {
			t.Fatalf("connection %d of 127.0.0.2 before the reload: %v", i+1, err)
		}
		held = append(held, c)
	}
	return tb, held
}

// wantAcquire checks Acquire's verdict on client (nil: admitted).
func wantAcquire(t *testing.T, tb *Table, client netip.AddrPort, want error) {
	t.Helper()
	if err := tb.Acquire(client); !errors.Is(err, want) {
		t.Fatalf("Acquire(%s) = %v, want %v", client, err, want)
	}
}

// wantEmpty checks that no source holds anything any more.
func wantEmpty(t *testing.T, tables ...*Table) {
	t.Helper()
	for i, tb := range tables {
		if n := tb.Len(); n != 0 {
			t.Errorf("table %d tracks %d sources after every connection ended, want 0", i, n)
		}
	}
}

// TestReplacesCountsOldConnections: the successor of a Table whose
// 127.0.0.2 holds 2 connections counts them against its own MaxConns,
// lower, equal or higher; each old connection the old Table releases
// frees a place in the new count, and the counts end at zero.
func TestReplacesCountsOldConnections(t *testing.T) {
	tests := []struct {
		name     string
		max      int
		refusals int // connections of 127.0.0.2 refused until old ones end
	}{
		{"same limit", 2, 1},
		{"lower limit", 1, 2},
		{"higher limit admits at once", 3, 0},
	}
	third, other := ap("127.0.0.2:2000"), ap("127.0.0.3:1000")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old, held := holding(t, Config{MaxConns: 2}, 2)
			tb := New(Config{MaxConns: tc.max, Replaces: old})
			wantAcquire(t, tb, other, nil)
			for i := range tc.refusals {
				wantAcquire(t, tb, third, ErrTooMany)
				old.Release(held[i])
			}
			wantAcquire(t, tb, third, nil)
			if got, want := tb.Conns(tb.Key(third.Addr())), 2-tc.refusals+1; got != want {
				t.Errorf("127.0.0.2 holds %d connections by the new count, want %d", got, want)
			}
			for _, c := range held[tc.refusals:] {
				old.Release(c)
			}
			old.Release(held[0]) // a second release of an ended one changes nothing
			tb.Release(third)
			tb.Release(other)
			wantEmpty(t, old, tb)
		})
	}
}

// TestReplacesCarriesRate: a source's spent rate allowance survives a
// reload; exactly with the same rate, as connections spent (capped at the
// new burst) with another; a rate added starts full, one removed forgets.
func TestReplacesCarriesRate(t *testing.T) {
	tests := []struct {
		name      string
		old, next Config
		spend     int           // connections 127.0.0.2 opens before the reload
		fit       int           // connections that then fit at once
		wait      time.Duration // until the next one fits (0: no rate after)
	}{
		{"same rate", Config{Rate: 1, Burst: 3}, Config{Rate: 1, Burst: 3}, 3, 0, time.Second},
		{"faster, bigger burst", Config{Rate: 1, Burst: 3}, Config{Rate: 10, Burst: 5}, 3, 2, 100 * time.Millisecond},
		{"slower, smaller burst", Config{Rate: 10, Burst: 10}, Config{Rate: 1, Burst: 2}, 10, 0, time.Second},
		{"half spent", Config{Rate: 1, Burst: 4}, Config{Rate: 2, Burst: 4}, 2, 2, 500 * time.Millisecond},
		{"rate added", Config{MaxConns: 100}, Config{Rate: 1, Burst: 2}, 3, 2, time.Second},
		{"rate removed", Config{Rate: 1, Burst: 3}, Config{MaxConns: 100}, 3, 50, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			tc.old.Now, tc.next.Now = clk.now, clk.now
			old, held := holding(t, tc.old, tc.spend)
			tc.next.Replaces = old
			tb := New(tc.next)
			tb.TakeOver() // as its listener does when it serves
			c := ap("127.0.0.2:3000")
			for i := range tc.fit {
				if err := tb.Acquire(c); err != nil {
					t.Fatalf("connection %d after the reload: %v, want %d to fit", i+1, err, tc.fit)
				}
			}
			if tc.wait == 0 {
				return
			}
			wantAcquire(t, tb, c, ErrTooFast)
			clk.advance(tc.wait - time.Millisecond)
			wantAcquire(t, tb, c, ErrTooFast)
			clk.advance(time.Millisecond)
			wantAcquire(t, tb, c, nil)
			for _, h := range held {
				old.Release(h)
			}
			for range tc.fit + 1 {
				tb.Release(c)
			}
			clk.advance(time.Minute) // the allowance refills, the source is forgotten
			tb.Sweep()
			wantEmpty(t, old, tb)
		})
	}
}

// TestReplacesOtherPrefix: with another prefix length the successor starts
// empty, and the old Table's releases do not touch its count.
func TestReplacesOtherPrefix(t *testing.T) {
	old, held := holding(t, Config{MaxConns: 2}, 2)
	tb := New(Config{MaxConns: 1, IPv4Prefix: 24, Replaces: old})
	c := ap("127.0.0.2:3000")
	wantAcquire(t, tb, c, nil)
	for _, h := range held {
		old.Release(h)
	}
	wantAcquire(t, tb, ap("127.0.0.9:1"), ErrTooMany) // the /24 holds one, by the new count
	tb.Release(c)
	wantEmpty(t, old, tb)
}

// TestReplacesConcurrent: three generations of a Table admit and release
// at once on one source (the old listeners' connections end while the new
// one accepts); the count never passes the newest limit through it, and
// ends at zero. Run with -race.
func TestReplacesConcurrent(t *testing.T) {
	const max, rounds = 4, 2000
	first := New(Config{MaxConns: max})
	second := New(Config{MaxConns: max, Replaces: first})
	third := New(Config{MaxConns: max, Replaces: second})
	tables := []*Table{first, second, third}
	key := first.Key(netip.MustParseAddr("127.0.0.2"))
	var wg sync.WaitGroup
	over := make(chan int, len(tables))
	for i, tb := range tables {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), uint16(i))
			for range rounds {
				if tb.Acquire(c) != nil {
					continue
				}
				if n := third.Conns(key); n > max {
					over <- n
				}
				tb.Release(c)
			}
		}()
	}
	wg.Wait()
	close(over)
	for n := range over {
		t.Errorf("127.0.0.2 held %d connections, limit %d", n, max)
	}
	wantEmpty(t, tables...)
}

// TestReplacesUnusedLeavesRate: a successor with another rate that is
// built and never put in force (a reload that fails after building it, say
// on a port it cannot bind) changes nothing: the Table in force goes on
// refusing the source that spent its burst for exactly as long as before.
// A later successor that is taken over carries the allowance over from the
// rate that was in force. Fails before the conversion waited for TakeOver:
// New converted the shared stamps to the unused successor's rate, and the
// old Table admitted the source at once.
func TestReplacesUnusedLeavesRate(t *testing.T) {
	clk := newClock()
	old, held := holding(t, Config{Rate: 1, Burst: 3, Now: clk.now}, 3)
	_ = New(Config{Rate: 10, Burst: 1, Now: clk.now, Replaces: old})
	c := ap("127.0.0.2:3000")
	wantAcquire(t, old, c, ErrTooFast)
	clk.advance(time.Second - time.Millisecond)
	wantAcquire(t, old, c, ErrTooFast)
	clk.advance(time.Millisecond)
	wantAcquire(t, old, c, nil) // 3 connections ahead of the clock again

	next := New(Config{Rate: 10, Burst: 5, Now: clk.now, Replaces: old})
	next.TakeOver()
	for i := range 2 { // 3 of its burst of 5 spent
		if err := next.Acquire(c); err != nil {
			t.Fatalf("connection %d after the reload that took effect: %v", i+1, err)
		}
	}
	wantAcquire(t, next, c, ErrTooFast)
	clk.advance(100 * time.Millisecond)
	wantAcquire(t, next, c, nil)
	for _, h := range append(held, c) {
		old.Release(h)
	}
	for range 3 {
		next.Release(c)
	}
	clk.advance(time.Minute)
	next.Sweep()
	wantEmpty(t, old, next)
}
