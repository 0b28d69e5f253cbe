// Package listennet picks the network a TCP listen address is bound with,
// so that every TCP socket relay listens on (listeners, the admin
// endpoint) takes the address families its address names.
package listennet

import "net/netip"

// TCP is "tcp4" for an IPv4 listen address, the wildcard 0.0.0.0
// included: with "tcp" Go listens on 0.0.0.0 through a dual-stack IPv6
// socket, which takes IPv6 clients too, on an address written for IPv4
// (HAProxy and nginx bind it IPv4-only). Anything else is "tcp": [::]
// and ":PORT" stay dual-stack (IPv4 clients arrive IPv4-mapped, and the
// ACL matches them as IPv4).
func TCP(addr string) string {
	if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Is4() {
		return "tcp4"
	}
	return "tcp"
}
