package config

import (
	"net/netip"
)

// binding is a set of ports some part of the config will listen on.
type binding struct {
	path        string // key that asks for the ports: "listeners[1].listen"
	what        string // for messages: "listener cms-http"
	proto       string // "tcp" or "udp"
	addr        netip.Addr
	first, last uint16
}

// checkOverlaps reports every pair of bindings that would fight over a port:
// same protocol, intersecting port ranges, and addresses that coincide. An
// unspecified address (0.0.0.0, [::], or none) covers every address, since
// Go binds it dual-stack. Port 0 asks the kernel for a free port and never
// collides. The later binding in the file gets the error.
func checkOverlaps(binds []binding, p *problems) {
	for j := range binds {
		for i := range j {
			a, b := binds[i], binds[j]
			if a.proto != b.proto || a.first == 0 || b.first == 0 {
				continue
			}
			lo, hi := max(a.first, b.first), min(a.last, b.last)
			if lo > hi || !addrsCollide(a.addr, b.addr) {
				continue
			}
			ports := "port"
			if lo != hi {
				ports = "ports"
			}
			p.addf(b.path, "%s %s %s %s also used by %s (%s)",
				b.proto, ports, FormatPortRange(lo, hi), isAre(lo == hi), a.what, a.path)
		}
	}
}

func addrsCollide(a, b netip.Addr) bool {
	return a.IsUnspecified() || b.IsUnspecified() || a == b
}

func isAre(one bool) string {
	if one {
		return "is"
	}
	return "are"
}
