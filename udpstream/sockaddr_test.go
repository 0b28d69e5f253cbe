//go:build linux

package udpstream

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// putSockaddr and addrPortFromSockaddr round-trip every address a socket of
// either family can carry, IPv4 always coming back unmapped.
func FuzzSockaddrRoundTrip(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1}, uint16(8100), false)
	f.Add([]byte{10, 0, 0, 6}, uint16(0), true)
	f.Add(netip.MustParseAddr("::1").AsSlice(), uint16(65535), true)
	f.Add(netip.MustParseAddr("::ffff:192.0.2.1").AsSlice(), uint16(1), true)
	f.Add(netip.MustParseAddr("2001:db8::1").AsSlice(), uint16(53), false)
	f.Fuzz(func(t *testing.T, ip []byte, port uint16, v6 bool) {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		ap := netip.AddrPortFrom(a, port)
		var sa unix.RawSockaddrInet6
		n := putSockaddr(&sa, ap, v6)
		want := netip.AddrPortFrom(a.Unmap(), port)
		got := addrPortFromSockaddr(&sa)
		switch {
		case !v6 && !a.Unmap().Is4():
			// An IPv6 address cannot go out of an IPv4 socket: it is
			// written as IPv6 for the kernel to refuse.
			if sa.Family != unix.AF_INET6 {
				t.Fatalf("%s on an IPv4 socket written as family %d", ap, sa.Family)
			}
		case !v6 && n != unix.SizeofSockaddrInet4, v6 && n != unix.SizeofSockaddrInet6:
			t.Fatalf("%s (v6 socket %v): length %d", ap, v6, n)
		}
		if got != want {
			t.Fatalf("%s (v6 socket %v) came back as %s, want %s", ap, v6, got, want)
		}
	})
}
