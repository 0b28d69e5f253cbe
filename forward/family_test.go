package forward

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// TestIPv4WildcardListensOnIPv4Only: a listener on 0.0.0.0 takes IPv4
// clients only, as the address says and as HAProxy and nginx bind it; Go
// listens on an IPv4 wildcard with network "tcp" through a dual-stack IPv6
// socket, so IPv6 clients reached a listener the admin had written for
// IPv4 (and passed an ACL's samenet or all). [::] stays dual-stack, as
// README says of IPv4-mapped clients on it. In a network namespace of its
// own: the test binds wildcards.
func TestIPv4WildcardListensOnIPv4Only(t *testing.T) {
	if !world.RunInNetns(t) {
		return
	}
	world.NeedIPv6Loopback(t)
	r := startRelay(t, Config{
		Listen:    []string{"0.0.0.0:0", "[::]:0"},
		Upstreams: [][]string{{"127.0.0.1:9"}, {"127.0.0.1:9"}},
	})
	reaches := func(client string, index int) bool {
		port := netip.MustParseAddrPort(r.addr(index)).Port()
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(netip.MustParseAddr(client), port).String(), 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	if got := r.addr(0); !netip.MustParseAddrPort(got).Addr().Is4() {
		t.Errorf("0.0.0.0 listens on %s", got)
	}
	for _, tc := range []struct {
		client string
		index  int
		want   bool
	}{
		{"127.0.0.1", 0, true},
		{"::1", 0, false},
		{"127.0.0.1", 1, true},
		{"::1", 1, true},
	} {
		if got := reaches(tc.client, tc.index); got != tc.want {
			t.Errorf("%s to %s: connected %v, want %v", tc.client, r.addr(tc.index), got, tc.want)
		}
	}
}
