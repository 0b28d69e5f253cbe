package acl

import (
	"fmt"
	"net/netip"
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
