package acl

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// slowDecide is the definition of first match, written apart from the
// tables and from expand: scan the rules in file order and return the
// first that names the listener (or all), applies to proto (or is a host
// rule) and covers addr. The tables must agree with it everywhere.
func slowDecide(l *List, ifaces []netip.Prefix, listener string, proto Proto, addr netip.Addr) *Rule {
	addr = addr.Unmap()
	for i := range l.rules {
		r := &l.rules[i]
		if r.Listeners != nil && !slices.Contains(r.Listeners, listener) {
			continue
		}
		if r.Proto != ProtoAny && r.Proto != proto || r.SSL {
			continue
		}
		if covers(r.Addr, ifaces, addr) {
			return r
		}
	}
	return nil
}

// slowDecideTLS is slowDecide for a TCP client over TLS with peer (nil:
// no certificate), using the reference glob below.
func slowDecideTLS(l *List, ifaces []netip.Prefix, listener string, addr netip.Addr, peer *Peer) *Rule {
	addr = addr.Unmap()
	for i := range l.rules {
		r := &l.rules[i]
		if r.Listeners != nil && !slices.Contains(r.Listeners, listener) || r.Proto == ProtoUDP {
			continue
		}
		if r.SSL && (peer == nil || !slowPeerMatch(r.CN, peer)) {
			continue
		}
		if covers(r.Addr, ifaces, addr) {
			return r
		}
	}
	return nil
}

func slowPeerMatch(pattern string, p *Peer) bool {
	if pattern == "" {
		return true
	}
	for _, n := range append([]string{p.CN}, p.DNSNames...) {
		if n != "" && slowGlob(pattern, strings.ToLower(n)) {
			return true
		}
	}
	return false
}

// slowGlob is the textbook glob table, * matching any run of bytes:
// m[i][j] says whether pattern[i:] matches name[j:]. (The obvious
// recursion is exponential in the stars: 39 of them against 60 bytes hung
// FuzzMatchName's reference, not matchName.)
func slowGlob(pattern, name string) bool {
	m := make([][]bool, len(pattern)+1)
	for i := range m {
		m[i] = make([]bool, len(name)+1)
	}
	m[len(pattern)][len(name)] = true
	for i := len(pattern) - 1; i >= 0; i-- {
		for j := len(name); j >= 0; j-- {
			if pattern[i] == '*' {
				m[i][j] = m[i+1][j] || j < len(name) && m[i][j+1]
			} else {
				m[i][j] = j < len(name) && pattern[i] == name[j] && m[i+1][j+1]
			}
		}
	}
	return m[0][0]
}

// covers says whether the ADDRESS column a matches the unmapped addr,
// reading samehost and samenet straight from the interface list.
func covers(a Address, ifaces []netip.Prefix, addr netip.Addr) bool {
	switch a.Kind {
	case AddrAll:
		return true
	case AddrPrefix:
		return a.Prefix.Contains(addr)
	}
	for _, p := range ifaces {
		ip, bits := p.Addr().WithZone(""), p.Bits()
		if ip.Is4In6() && bits >= 96 {
			ip, bits = ip.Unmap(), bits-96
		}
		if a.Kind == AddrSameHost && ip.Unmap() == addr ||
			a.Kind == AddrSameNet && netip.PrefixFrom(ip, bits).Contains(addr) {
			return true
		}
	}
	return false
}

// disagreement compares Decide with slowDecide for addr, and for addr
// written as IPv4-mapped IPv6, for listeners a, b and one no rule names,
// over every query protocol. It describes the first difference, or is "".
func disagreement(l *List, ifaces []netip.Prefix, addr netip.Addr) string {
	for _, listener := range []string{"a", "b", "c"} {
		for _, proto := range []Proto{ProtoAny, ProtoTCP, ProtoUDP} {
			for _, form := range []netip.Addr{addr, netip.AddrFrom16(addr.As16())} {
				want := slowDecide(l, ifaces, listener, proto, form)
				got := l.Decide(listener, proto, form)
				if got.Rule != want || want != nil && got.Allow != want.Allow || want == nil && got.Allow {
					return fmt.Sprintf("Decide(%s, %v, %v) = %v, first match says %v",
						listener, proto, form, got.Rule, want)
				}
			}
		}
	}
	return ""
}

// randomFile writes n rules whose prefixes nest and overlap often: short
// prefixes over a few base addresses, both families, every column form.
func randomFile(rng *rand.Rand, n int) string {
	var b strings.Builder
	protos := []string{"host", "tcp", "udp"}
	listeners := []string{"all", "all", "a", "b", "a,b"}
	for range n {
		fmt.Fprintf(&b, "%s %s %s %s\n",
			protos[rng.IntN(3)], listeners[rng.IntN(len(listeners))],
			randomAddress(rng), []string{"allow", "reject"}[rng.IntN(2)])
	}
	return b.String()
}

func randomAddress(rng *rand.Rand) string {
	switch rng.IntN(40) {
	case 0:
		return "all"
	case 1:
		return "samenet"
	case 2:
		return "samehost"
	}
	if rng.IntN(2) == 0 {
		a := [4]byte{[]byte{10, 192, 0, 255}[rng.IntN(4)], byte(rng.IntN(4)), byte(rng.IntN(256)), byte(rng.IntN(256))}
		bits := rng.IntN(33)
		if rng.IntN(4) == 0 { // the dotted-mask form
			m := ^uint32(0) << (32 - bits)
			if bits == 0 {
				m = 0
			}
			return fmt.Sprintf("%s %d.%d.%d.%d", netip.AddrFrom4(a), m>>24, m>>16&0xff, m>>8&0xff, m&0xff)
		}
		return fmt.Sprintf("%s/%d", netip.AddrFrom4(a), bits)
	}
	var a [16]byte
	a[0] = []byte{0x20, 0xfd, 0x00, 0xff}[rng.IntN(4)]
	a[1] = byte(rng.IntN(2))
	for i := 2; i < 16; i++ {
		a[i] = byte(rng.IntN(256))
	}
	if rng.IntN(8) == 0 { // IPv4-mapped rule
		a = netip.AddrFrom4([4]byte{10, byte(rng.IntN(4)), byte(rng.IntN(256)), 0}).As16()
		return fmt.Sprintf("%s/%d", netip.AddrFrom16(a), 96+rng.IntN(33))
	}
	return fmt.Sprintf("%s/%d", netip.AddrFrom16(a), []int{0, 1, 7, 8, 16, 63, 64, 65, 120, 127, 128}[rng.IntN(11)])
}

// probes returns addresses at and around every range the rules name, plus
// random ones and the ends of both address spaces.
func probes(rng *rand.Rand, l *List, ifaces []netip.Prefix) []netip.Addr {
	out := []netip.Addr{
		netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("255.255.255.255"),
		netip.MustParseAddr("::"), netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
	}
	for _, r := range l.rules {
		for _, p := range expand(r.Addr, ifaces) {
			s := spanOf(p, 0)
			for _, u := range []u128{s.first, s.last, s.last.addOne(), {s.first.hi, s.first.lo - 1}} {
				if p.Addr().Is4() {
					v := uint32(u.lo)
					out = append(out, netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}))
				} else {
					var b [16]byte
					for i := range 8 {
						b[i] = byte(u.hi >> (56 - 8*i))
						b[8+i] = byte(u.lo >> (56 - 8*i))
					}
					out = append(out, netip.AddrFrom16(b))
				}
			}
		}
	}
	for range 200 {
		out = append(out, netip.AddrFrom4([4]byte{byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))}))
	}
	return out
}

func TestTablesAgreeWithLinearScan(t *testing.T) {
	ifaces, _ := testOpts.Interfaces()
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 40 {
		n := 1 + rng.IntN(60)
		if round%10 == 9 {
			n = 2000
		}
		text := randomFile(rng, n)
		l := mustParse(t, text)
		for _, addr := range probes(rng, l, ifaces) {
			if msg := disagreement(l, ifaces, addr); msg != "" {
				t.Fatalf("round %d: %s\nfile:\n%s", round, msg, text)
			}
		}
	}
}

func TestFlattenTilesSpace(t *testing.T) {
	max4 := u128{0, 0xffffffff}
	spans := []span{
		{u128{0, 0}, max4, 5},                         // 0.0.0.0/0, rule 5
		{u128{0, 0x0a000000}, u128{0, 0x0affffff}, 2}, // 10/8, rule 2
		{u128{0, 0x0a010000}, u128{0, 0x0a01ffff}, 7}, // 10.1/16, rule 7 (loses to 2)
		{u128{0, 0xffffffff}, max4, 1},                // 255.255.255.255/32, rule 1
	}
	starts, rules := flatten(spans, max4)
	var got []string
	for i := range starts {
		got = append(got, fmt.Sprintf("%08x:%d", starts[i].lo, rules[i]))
	}
	want := []string{"00000000:5", "0a000000:2", "0b000000:5", "ffffffff:1"}
	if !slices.Equal(got, want) {
		t.Errorf("flatten = %v, want %v", got, want)
	}
}
