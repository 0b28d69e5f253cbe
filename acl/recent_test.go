package acl

import (
	"bytes"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestRecentKeepsTheLastRejections: Recent lists rejections newest first
// with the deciding line, never allowed clients, and never more than
// RecentCap however many come.
func TestRecentKeepsTheLastRejections(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	s := Set{Now: clock.Now}
	s.Store(mustParse(t, "host web 127.0.0.0/8 allow\nhost web 10.0.0.0/8 reject\n"))
	admit := s.Guard("web", ProtoTCP, zerolog.Nop())
	other := s.Guard("rtb", ProtoUDP, zerolog.Nop())
	if len(s.Recent()) != 0 {
		t.Fatal("Recent before any rejection")
	}
	admit(netip.MustParseAddrPort("127.0.0.1:1"))
	admit(netip.MustParseAddrPort("10.1.2.3:40000"))
	clock.Advance(time.Second)
	other(netip.MustParseAddrPort("127.0.0.9:53"))
	got := s.Recent()
	want := []Rejection{
		{Time: clock.Now(), Listener: "rtb", Proto: ProtoUDP, Client: netip.MustParseAddrPort("127.0.0.9:53"), Rule: "no matching line"},
		{Time: clock.Now().Add(-time.Second), Listener: "web", Proto: ProtoTCP, Client: netip.MustParseAddrPort("10.1.2.3:40000"), Rule: "t.conf:2 host web 10.0.0.0/8 reject"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Recent =\n%v\nwant\n%v", got, want)
	}

	for i := range 3 * RecentCap {
		admit(netip.AddrPortFrom(netip.MustParseAddr("10.9.9.9"), uint16(i)))
	}
	got = s.Recent()
	if len(got) != RecentCap || got[0].Client.Port() != 3*RecentCap-1 || got[RecentCap-1].Client.Port() != 2*RecentCap {
		t.Errorf("after %d rejections: %d kept, newest port %d, oldest %d", 3*RecentCap, len(got), got[0].Client.Port(), got[len(got)-1].Client.Port())
	}
}

// TestManySourcesKeepNothing: 50 000 distinct addresses rejected by the
// ACL and refused by a later check (a scan of an edge relay) leave the Set
// as big as a handful did: Recent holds RecentCap of them, the one guard
// counts them, its log holds the budget's lines and one summary, and the
// heap has not grown with them. No table of the Set is keyed by client.
func TestManySourcesKeepNothing(t *testing.T) {
	var buf bytes.Buffer
	s := Set{LogBurst: 5, LogInterval: time.Hour}
	s.Store(mustParse(t, "host web 10.0.0.0/8 reject\nhost web all allow\n"))
	admit := s.Guard("web", ProtoTCP, zerolog.New(&buf))
	refuse := s.Refusals("web", ProtoTCP, zerolog.New(&buf))
	source := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 40000)
	}
	admit(source(0)) // the Set's own first allocations, before the measure
	refuse(source(0), "per_source: too many")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 50_000
	for i := 1; i <= n; i++ {
		if admit(source(i)) {
			t.Fatalf("%s admitted", source(i))
		}
		refuse(source(i), "per_source: too many")
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	logged := buf.Len()
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc) - int64(logged); grown > 64<<10 {
		t.Errorf("the heap grew %d KiB beside the log's %d KiB over %d sources, want no per-source state", grown>>10, logged>>10, n)
	}
	s.Flush()
	if got := s.Recent(); len(got) != RecentCap || got[0].Client != source(n) {
		t.Errorf("Recent holds %d, newest %v; want %d, newest %v", len(got), got[0].Client, RecentCap, source(n))
	}
	c := s.Counts()
	if len(c) != 1 || c[0].Rejected != n+1 || c[0].Refused != n+1 || c[0].Logged != 5 {
		t.Errorf("Counts = %+v, want one guard: %d rejected, %d refused, 5 logged", c, n+1, n+1)
	}
	if lines := logLines(t, &buf); len(lines) != 6 {
		t.Errorf("%d log lines, want the burst of 5 and one summary", len(lines))
	}
}
