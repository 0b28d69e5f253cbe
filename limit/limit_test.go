package limit

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// clock is a manual clock for the rate limit.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestMaxConnsPerSource(t *testing.T) {
	tb := New(Config{MaxConns: 2})
	a1, a2, a3 := ap("127.0.0.2:1000"), ap("127.0.0.2:1001"), ap("127.0.0.2:1002")
	other := ap("127.0.0.3:1000")
	for _, c := range []netip.AddrPort{a1, a2} {
		if err := tb.Acquire(c); err != nil {
			t.Fatalf("Acquire(%s) = %v, want nil", c, err)
		}
	}
	if err := tb.Acquire(a3); !errors.Is(err, ErrTooMany) {
		t.Fatalf("third connection of 127.0.0.2: %v, want ErrTooMany", err)
	}
	if err := tb.Acquire(other); err != nil {
		t.Fatalf("127.0.0.3 refused while 127.0.0.2 is at its limit: %v", err)
	}
	tb.Release(a1)
	if err := tb.Acquire(a3); err != nil {
		t.Fatalf("after a release 127.0.0.2 is still refused: %v", err)
	}
	for _, c := range []netip.AddrPort{a2, a3, other} {
		tb.Release(c)
	}
	if n := tb.Len(); n != 0 {
		t.Fatalf("%d sources tracked after every connection ended, want 0", n)
	}
}

func TestIPv6CountsPerPrefix(t *testing.T) {
	tests := []struct {
		name       string
		v6         int
		a, b       string
		sameSource bool
	}{
		{"same /64", 0, "[2001:db8:1:2::1]:1", "[2001:db8:1:2:ffff::9]:2", true},
		{"other /64", 0, "[2001:db8:1:2::1]:1", "[2001:db8:1:3::1]:2", false},
		{"per address with /128", 128, "[2001:db8:1:2::1]:1", "[2001:db8:1:2::2]:2", false},
		{"/48 groups subnets", 48, "[2001:db8:1:2::1]:1", "[2001:db8:1:ff::1]:2", true},
		{"mapped IPv4 is IPv4", 0, "[::ffff:127.0.0.2]:1", "127.0.0.2:2", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := New(Config{MaxConns: 1, IPv6Prefix: tc.v6})
			if err := tb.Acquire(ap(tc.a)); err != nil {
				t.Fatal(err)
			}
			err := tb.Acquire(ap(tc.b))
			if got := errors.Is(err, ErrTooMany); got != tc.sameSource {
				t.Fatalf("second Acquire = %v; same source = %t, want %t", err, got, tc.sameSource)
			}
		})
	}
}

func TestRateAndBurst(t *testing.T) {
	clk := newClock()
	tb := New(Config{Rate: 2, Burst: 3, Now: clk.now})
	c := ap("127.0.0.2:1")
	acquire := func() error {
		err := tb.Acquire(c)
		if err == nil {
			tb.Release(c)
		}
		return err
	}
	for i := range 3 {
		if err := acquire(); err != nil {
			t.Fatalf("connection %d of the burst: %v", i+1, err)
		}
	}
	if err := acquire(); !errors.Is(err, ErrTooFast) {
		t.Fatalf("fourth connection at once: %v, want ErrTooFast", err)
	}
	clk.advance(499 * time.Millisecond)
	if err := acquire(); !errors.Is(err, ErrTooFast) {
		t.Fatalf("after 499ms at 2/s: %v, want ErrTooFast", err)
	}
	clk.advance(time.Millisecond)
	if err := acquire(); err != nil {
		t.Fatalf("after 500ms at 2/s: %v, want a new token", err)
	}
	if err := acquire(); !errors.Is(err, ErrTooFast) {
		t.Fatalf("second connection after one token: %v, want ErrTooFast", err)
	}
	// A refused attempt costs nothing: the rate is of connections let in.
	clk.advance(1500 * time.Millisecond)
	for i := range 3 {
		if err := acquire(); err != nil {
			t.Fatalf("after the bucket refilled, connection %d: %v", i+1, err)
		}
	}
	clk.advance(time.Hour)
	if n := tb.Len(); n != 1 {
		t.Fatalf("Len = %d before a sweep, want 1 (in rate debt until now)", n)
	}
	tb.Sweep()
	if n := tb.Len(); n != 0 {
		t.Fatalf("Len = %d after a sweep an hour later, want 0", n)
	}
}

// TestBoundedUnderManySources sends a million one-off sources, each still
// in rate debt, through a small table: it never tracks more than MaxSources,
// and a source holding a connection is never forgotten.
func TestBoundedUnderManySources(t *testing.T) {
	clk := newClock()
	tb := New(Config{MaxConns: 1, Rate: 1, Burst: 1, MaxSources: 1000, Now: clk.now})
	holder := ap("127.0.0.2:1")
	if err := tb.Acquire(holder); err != nil {
		t.Fatal(err)
	}
	n := 1_000_000
	if testing.Short() || raceEnabled {
		n = 100_000
	}
	var b [16]byte
	b[0] = 0x20
	for i := range n {
		binary.BigEndian.PutUint32(b[4:], uint32(i)) // a new /64 each time
		addr := netip.AddrPortFrom(netip.AddrFrom16(b), 443)
		if err := tb.Acquire(addr); err != nil {
			t.Fatalf("newcomer %d refused: %v (the table should forget an idle source)", i, err)
		}
		tb.Release(addr)
		if i%1000 == 0 {
			clk.advance(time.Millisecond)
		}
	}
	if got := tb.Len(); got > 1000 {
		t.Fatalf("Len = %d after %d sources, want at most MaxSources=1000", got, n)
	}
	if got := tb.Conns(tb.Key(holder.Addr())); got != 1 {
		t.Fatalf("the source holding a connection was forgotten: conns %d, want 1", got)
	}
	if err := tb.Acquire(ap("127.0.0.2:2")); !errors.Is(err, ErrTooMany) {
		t.Fatalf("holder's second connection: %v, want ErrTooMany", err)
	}
}

func TestFullOfHolders(t *testing.T) {
	tb := New(Config{MaxConns: 5, MaxSources: 2})
	for _, c := range []string{"127.0.0.2:1", "127.0.0.3:1"} {
		if err := tb.Acquire(ap(c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tb.Acquire(ap("127.0.0.4:1")); !errors.Is(err, ErrFull) {
		t.Fatalf("third source in a table of two holders: %v, want ErrFull", err)
	}
	if err := tb.Acquire(ap("127.0.0.2:2")); err != nil {
		t.Fatalf("a known source in a full table: %v", err)
	}
	tb.Release(ap("127.0.0.3:1"))
	if err := tb.Acquire(ap("127.0.0.4:1")); err != nil {
		t.Fatalf("after a holder left: %v", err)
	}
}

func TestReleaseWithoutAcquire(t *testing.T) {
	tb := New(Config{MaxConns: 1})
	c := ap("127.0.0.2:1")
	tb.Release(c) // must not make room for a second connection
	if err := tb.Acquire(c); err != nil {
		t.Fatal(err)
	}
	if err := tb.Acquire(c); !errors.Is(err, ErrTooMany) {
		t.Fatalf("Release without Acquire raised the limit: %v", err)
	}
}

// FuzzAccounting drives a table with a random sequence of connections
// opening and closing on a few sources and checks its counts against a
// model: per source, connections held == acquired - released, never above
// MaxConns, and a table whose connections all ended and whose clock moved
// past every debt is empty after a sweep.
func FuzzAccounting(f *testing.F) {
	f.Add([]byte{0, 1, 2, 0x80, 0x81, 3, 0x82})
	f.Add([]byte{0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x40})
	f.Add([]byte{7, 15, 0x47, 0x8f, 0xc3, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		clk := newClock()
		tb := New(Config{MaxConns: 3, Rate: 10, Burst: 4, MaxSources: 4, Now: clk.now})
		held := map[netip.Prefix]int{}
		var open []netip.AddrPort
		for i, op := range ops {
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 2 + op&7}), uint16(i))
			switch {
			case op&0xc0 == 0xc0:
				clk.advance(time.Duration(op&0x3f) * 10 * time.Millisecond)
			case op&0x80 != 0 && len(open) > 0:
				j := int(op&0x3f) % len(open)
				c := open[j]
				open = append(open[:j], open[j+1:]...)
				tb.Release(c)
				held[tb.Key(c.Addr())]--
			case op&0x40 != 0:
				tb.Sweep()
			default:
				if err := tb.Acquire(src); err == nil {
					open = append(open, src)
					held[tb.Key(src.Addr())]++
				}
			}
			for k, n := range held {
				if got := tb.Conns(k); got != n || n > 3 {
					t.Fatalf("op %d: source %s holds %d by the table, %d by the model (max 3)", i, k, got, n)
				}
			}
			if tb.Len() > 4 {
				t.Fatalf("op %d: %d sources tracked, MaxSources is 4", i, tb.Len())
			}
		}
		for _, c := range open {
			tb.Release(c)
		}
		clk.advance(time.Second)
		tb.Sweep()
		if n := tb.Len(); n != 0 {
			t.Fatalf("%d sources left after every connection ended and a sweep", n)
		}
	})
}

// BenchmarkAcquireRelease is the steady path of a listener with limits: a
// working set of sources opening and closing connections. It must not
// allocate.
func BenchmarkAcquireRelease(b *testing.B) {
	tb := New(Config{MaxConns: 100, Rate: 1e9, Burst: 1000})
	clients := make([]netip.AddrPort, 256)
	for i := range clients {
		clients[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, byte(i >> 8), byte(i)}), 40000)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c := clients[i%len(clients)]
		if err := tb.Acquire(c); err != nil {
			b.Fatal(err)
		}
		tb.Release(c)
	}
}

func TestAcquireReleaseAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	tb := New(Config{MaxConns: 100, Rate: 1e9, Burst: 1000})
	c := ap("127.0.0.2:40000")
	other := ap("[2001:db8::1]:40000")
	allocs := testing.AllocsPerRun(1000, func() {
		_ = tb.Acquire(c)
		_ = tb.Acquire(other)
		tb.Release(c)
		tb.Release(other)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per Acquire/Release, want 0", allocs)
	}
}

// TestMemoryPerSource measures the heap a full table holds and fails if a
// source costs more than 200 bytes; README quotes the figure.
func TestMemoryPerSource(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes the heap")
	}
	const n = 65536
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tb := New(Config{MaxConns: 10, MaxSources: n})
	for i := range n {
		_ = tb.Acquire(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 1))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes of heap per tracked source (%d sources: %.1f MiB)", per, n, per*n/(1<<20))
	if per > 200 {
		t.Fatalf("%.0f bytes per source, want at most 200", per)
	}
	runtime.KeepAlive(tb)
}

// TestTake: a rate without connections, for datagrams: as many events of a
// run fit as the bucket holds.
func TestTake(t *testing.T) {
	clk := newClock()
	tb := New(Config{Rate: 10, Burst: 10, Now: clk.now})
	c := ap("127.0.0.2:1")
	if n := tb.Take(c, 7); n != 7 {
		t.Fatalf("7 of a burst of 10: %d fit", n)
	}
	if n := tb.Take(c, 5); n != 3 {
		t.Fatalf("5 more at once: %d fit, want the 3 left of the burst", n)
	}
	if n := tb.Take(c, 1); n != 0 {
		t.Fatalf("an 11th at once: %d fit", n)
	}
	if n := tb.Take(ap("127.0.0.3:1"), 1); n != 1 {
		t.Fatal("another source refused")
	}
	clk.advance(250 * time.Millisecond)
	if n := tb.Take(c, 5); n != 2 {
		t.Fatalf("after 250 ms at 10/s: %d fit, want 2", n)
	}
	if n := tb.Conns(tb.Key(c.Addr())); n != 0 {
		t.Fatalf("Take holds %d connections, want 0", n)
	}
	if n := New(Config{MaxConns: 1}).Take(c, 1000); n != 1000 {
		t.Fatalf("Take without a Rate: %d of 1000 fit", n)
	}
}
