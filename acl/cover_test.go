package acl

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestHostBitsKept: a prefix written with host bits set matches its
// network (Prefix), and the Address keeps what was written, for lint.
func TestHostBitsKept(t *testing.T) {
	tests := []struct {
		addr, prefix, written, host string
	}{
		{"203.0.113.7/24", "203.0.113.0/24", "203.0.113.7/24", "203.0.113.7"},
		{"203.0.113.7/32", "203.0.113.7/32", "", ""},
		{"203.0.113.0/24", "203.0.113.0/24", "", ""},
		{"10.8.0.5 255.255.0.0", "10.8.0.0/16", "10.8.0.5 255.255.0.0", "10.8.0.5"},
		{"10.8.0.0 255.255.0.0", "10.8.0.0/16", "", ""},
		{"2001:db8::7/64", "2001:db8::/64", "2001:db8::7/64", "2001:db8::7"},
		{"2001:db8::1 ffff:ffff::", "2001:db8::/32", "2001:db8::1 ffff:ffff::", "2001:db8::1"},
		{"::ffff:10.1.2.3/104", "10.0.0.0/8", "::ffff:10.1.2.3/104", "10.1.2.3"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8", "", ""},
		{"1.2.3.4/0", "0.0.0.0/0", "1.2.3.4/0", "1.2.3.4"},
	}
	for _, tt := range tests {
		r := mustParse(t, "host web "+tt.addr+" allow\n").Rules()[0]
		var host string
		if r.Addr.Host.IsValid() {
			host = r.Addr.Host.String()
		}
		if r.Addr.Prefix.String() != tt.prefix || r.Addr.Written != tt.written || host != tt.host {
			t.Errorf("%s: Prefix %s, Written %q, Host %q; want %s, %q, %q",
				tt.addr, r.Addr.Prefix, r.Addr.Written, host, tt.prefix, tt.written, tt.host)
		}
		if got, want := r.String(), "host web "+tt.prefix+" allow"; got != want {
			t.Errorf("%s: String() = %q, want %q (the masked form: what it matches)", tt.addr, got, want)
		}
	}
}

// ruleMatches is the definition of a rule matching a connection, apart
// from Covers: for a TLS client (tls set; peer nil: no certificate) as
// DecideTLS reads it, else for a plain query over proto as Decide does.
func ruleMatches(r *Rule, ifaces []netip.Prefix, listener string, proto Proto, tls bool, peer *Peer, addr netip.Addr) bool {
	if r.Listeners != nil && !slices.Contains(r.Listeners, listener) || !covers(r.Addr, ifaces, addr) {
		return false
	}
	if tls {
		return r.Proto != ProtoUDP && (!r.SSL || peer != nil && slowPeerMatch(r.CN, peer))
	}
	return !r.SSL && (r.Proto == ProtoAny || r.Proto == proto)
}

// TestCoversAgreesWithMatching: whenever Covers says line i covers line j,
// every connection j matches, i matches too, over random files whose
// prefixes nest (randomFile) with hostssl lines of assorted cn= patterns,
// probed at and around every range and with assorted certificates.
func TestCoversAgreesWithMatching(t *testing.T) {
	ifaces, _ := testOpts.Interfaces()
	rng := rand.New(rand.NewPCG(5, 6))
	patterns := []string{"", "", "box-*", "box-3", "BOX-3", "*", "**", "b*-3", "box-3*", "other"}
	peers := []*Peer{nil, {CN: "box-3"}, {CN: "box-4"}, {CN: ""}, {DNSNames: []string{"box-3"}},
		{CN: "other"}, {CN: "bx-3"}, {CN: "box-33"}, {CN: "x", DNSNames: []string{"", "Box-3"}}}
	covered := 0
	for round := range 30 {
		var text strings.Builder
		for _, line := range strings.SplitAfter(randomFile(rng, 1+rng.IntN(40)), "\n") {
			if line != "" && rng.IntN(4) == 0 {
				fields := strings.Fields(line)
				line = fmt.Sprintf("hostssl %s\n", strings.Join(fields[1:], " "))
				if p := patterns[rng.IntN(len(patterns))]; p != "" {
					line = strings.TrimSuffix(line, "\n") + " cn=" + p + "\n"
				}
			}
			text.WriteString(line)
		}
		l := mustParse(t, text.String())
		addrs := probes(rng, l, ifaces)
		for i := range l.rules {
			for j := i + 1; j < len(l.rules); j++ {
				ri, rj := &l.rules[i], &l.rules[j]
				if !ri.Covers(rj) {
					continue
				}
				covered++
				for _, addr := range addrs {
					for _, listener := range []string{"a", "b", "c"} {
						for q := range 3 + len(peers) {
							proto, tls, peer := Proto(q), false, (*Peer)(nil)
							if q >= 3 {
								proto, tls, peer = ProtoTCP, true, peers[q-3]
							}
							if ruleMatches(rj, ifaces, listener, proto, tls, peer, addr) &&
								!ruleMatches(ri, ifaces, listener, proto, tls, peer, addr) {
								t.Fatalf("round %d: %q said to cover %q, but only the latter matches %s on %s (proto %v, tls %v, peer %+v)",
									round, ri, rj, addr, listener, proto, tls, peer)
							}
						}
					}
				}
			}
		}
	}
	if covered < 100 {
		t.Errorf("only %d covering pairs: the files do not exercise Covers", covered)
	}
}

func TestCoversPattern(t *testing.T) {
	for _, tt := range []struct {
		p, q string
		want bool
	}{
		{"", "", true}, {"", "box-3", true}, {"", "box-*", true},
		{"box-3", "", false}, {"*", "", false},
		{"box-3", "box-3", true}, {"box-3", "box-4", false},
		{"box-*", "box-3", true}, {"box-*", "box-3.venue.example", true}, {"box-*", "xbox-3", false},
		{"box-*", "box-*", true}, {"*", "box-*", true}, {"**", "b*", true},
		{"box-*", "box-1*", false}, // true, but globs over globs are not judged
		{"box-3", "box-*", false},
	} {
		if got := coversPattern(tt.p, tt.q); got != tt.want {
			t.Errorf("coversPattern(%q, %q) = %v, want %v", tt.p, tt.q, got, tt.want)
		}
	}
}
