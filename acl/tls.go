package acl

import (
	"net/netip"
	"slices"
)

// Peer is the verified client certificate of a TLS connection, as hostssl
// rules see it.
type Peer struct {
	CN       string   // the subject's common name
	DNSNames []string // the DNS names among its SANs
}

// sslRule is a hostssl rule with the prefixes its ADDRESS covers.
type sslRule struct {
	index    uint32
	prefixes []netip.Prefix
}

// DecideTLS is Decide for a TCP connection that arrived over TLS: host and
// tcp rules match as for any TCP client, and hostssl rules match too when
// peer is set (the client sent a certificate its listener verified) and
// their cn= pattern, if any, fits the peer's common name or one of its DNS
// names. The first matching line still wins. peer nil: no certificate, and
// no hostssl line can match.
func (l *List) DecideTLS(listener string, addr netip.Addr, peer *Peer) Decision {
	if l == nil {
		return Decision{Allow: true}
	}
	if !addr.IsValid() {
		return Decision{}
	}
	// Without its zone: Prefix.Contains never matches a zoned address, so
	// a link-local client (fe80::1%eth0, as accept reports it) met no
	// hostssl line, not even "all", while the lookup ignores zones.
	addr = addr.Unmap().WithZone("")
	best := l.lookup(listener, ProtoTCP, addr)
	if peer != nil {
		for _, s := range l.ssl {
			if s.index >= best {
				break
			}
			r := &l.rules[s.index]
			if (r.Listeners == nil || slices.Contains(r.Listeners, listener)) &&
				inAny(s.prefixes, addr) && peer.matches(r.CN) {
				best = s.index
				break
			}
		}
	}
	return l.decision(best)
}

func inAny(prefixes []netip.Prefix, addr netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// matches reports whether the peer's common name or a DNS name fits
// pattern (empty: any peer). Names compare without regard to case.
func (p *Peer) matches(pattern string) bool {
	if pattern == "" {
		return true
	}
	if matchName(pattern, p.CN) {
		return true
	}
	for _, n := range p.DNSNames {
		if matchName(pattern, n) {
			return true
		}
	}
	return false
}

// matchName matches name against a lowercase pattern in which * stands for
// any run of characters (dots included): boxoffice-* fits boxoffice-3 and
// boxoffice-3.venue.example. It backtracks only to the last star, so it
// runs in time linear in len(pattern)*len(name) at worst.
func matchName(pattern, name string) bool {
	if name == "" {
		return false
	}
	px, nx := 0, 0
	star, mark := -1, 0
	for nx < len(name) {
		switch {
		case px < len(pattern) && pattern[px] == '*':
			star, mark = px, nx
			px++
		case px < len(pattern) && pattern[px] == lower(name[nx]):
			px++
			nx++
		case star >= 0:
			px = star + 1
			mark++
			nx = mark
		default:
			return false
		}
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// ExplainTLS is Explain for a TLS client presenting a certificate named cn
// ("" for a client without one), for "relay check -cn".
func (l *List) ExplainTLS(listener string, addr netip.Addr, cn string) string {
	if l == nil {
		return "allow: no ACL loaded"
	}
	var peer *Peer
	if cn != "" {
		peer = &Peer{CN: cn}
	}
	return l.DecideTLS(listener, addr, peer).explain()
}
