package admin

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// TestIPv4WildcardListensOnIPv4Only: an admin endpoint on 0.0.0.0 takes
// IPv4 clients only, as the listeners do (forward's test of the same
// name); net.Listen("tcp") made it a dual-stack socket that took IPv6
// clients too. [::] stays dual-stack. In a network namespace of its own:
// the test binds wildcards.
func TestIPv4WildcardListensOnIPv4Only(t *testing.T) {
	if !world.RunInNetns(t) {
		return
	}
	world.NeedIPv6Loopback(t)
	for _, tc := range []struct {
		listen     string
		ipv4, ipv6 bool
	}{
		{"0.0.0.0:0", true, false},
		{"[::]:0", true, true},
	} {
		s, err := New(Config{Listen: tc.listen})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Listen(); err != nil {
			t.Fatal(err)
		}
		port := netip.MustParseAddrPort(s.Addr().String()).Port()
		for client, want := range map[string]bool{"127.0.0.1": tc.ipv4, "::1": tc.ipv6} {
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(netip.MustParseAddr(client), port).String(), 2*time.Second)
			if err == nil {
				c.Close()
			}
			if got := err == nil; got != want {
				t.Errorf("admin on %s (%s): %s connected %v, want %v", tc.listen, s.Addr(), client, got, want)
			}
		}
		s.Close()
	}
}
