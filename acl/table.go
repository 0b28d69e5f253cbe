package acl

import (
	"cmp"
	"encoding/binary"
	"math"
	"net"
	"net/netip"
	"slices"
)

// noRule is the rule index of "no line matched". It is the largest index so
// that taking the minimum over several tables picks any real match over it.
const noRule = math.MaxUint32

// A table answers "which is the first rule covering this address?" for one
// (listener, protocol) pair in O(log n).
//
// The rules' prefixes are flattened into sorted, disjoint ranges that tile
// the whole address space, each labelled with the lowest rule index among
// the prefixes covering it (first match wins). A lookup finds the last range
// starting at or below the address, through a static search tree (index.go)
// rather than a plain binary search: over 100 000 rules a binary search
// makes ~17 dependent loads, the last several of them cache misses, while
// the tree reads about one cache line per level, the upper levels cached.
type table struct {
	v4    tree4
	v6    tree6
	first uint32 // lowest rule index in the table, noRule if empty
}

// tableSet holds one table per query protocol, indexed by Proto. The tcp
// table holds the host and tcp rules, the udp table the host and udp rules,
// and the host table the host rules only.
type tableSet [numProtos]table

func (t *table) lookup(addr netip.Addr) uint32 {
	if addr.Is4() {
		a4 := addr.As4()
		return t.v4.find(binary.BigEndian.Uint32(a4[:]))
	}
	return t.v6.find(u128From(addr))
}

// u128 is an IPv6 address as a number, for ordering.
type u128 struct{ hi, lo uint64 }

func u128From(addr netip.Addr) u128 {
	b := addr.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (a u128) less(b u128) bool {
	return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo
}

func (a u128) addOne() u128 {
	lo := a.lo + 1
	hi := a.hi
	if lo == 0 {
		hi++
	}
	return u128{hi, lo}
}

// span is the address range of one prefix of rule index rule. IPv4 spans
// use the low 32 bits of lo only.
type span struct {
	first, last u128
	rule        uint32
}

func spanOf(prefix netip.Prefix, rule uint32) span {
	first := u128From(prefix.Addr())
	hostBits := prefix.Addr().BitLen() - prefix.Bits()
	last := first
	switch {
	case prefix.Addr().Is4():
		a4 := prefix.Addr().As4()
		v := uint64(binary.BigEndian.Uint32(a4[:]))
		first = u128{0, v}
		last = u128{0, v | (1<<hostBits - 1)}
	case hostBits >= 64:
		last = u128{first.hi | (1<<(hostBits-64) - 1), math.MaxUint64}
	default:
		last.lo |= 1<<hostBits - 1
	}
	return span{first, last, rule}
}

// builder gathers spans per table before flattening.
type builder struct {
	v4, v6 [numProtos][]span
}

func (b *builder) add(ruleProto Proto, prefix netip.Prefix, rule uint32) {
	s := spanOf(prefix, rule)
	for q := range Proto(numProtos) {
		if ruleProto != ProtoAny && ruleProto != q {
			continue
		}
		if prefix.Addr().Is4() {
			b.v4[q] = append(b.v4[q], s)
		} else {
			b.v6[q] = append(b.v6[q], s)
		}
	}
}

func (b *builder) build() tableSet {
	var ts tableSet
	for q := range ts {
		ts[q].first = noRule
		for _, spans := range [][]span{b.v4[q], b.v6[q]} {
			for _, s := range spans {
				ts[q].first = min(ts[q].first, s.rule)
			}
		}
		starts, rules := flatten(b.v4[q], u128{0, math.MaxUint32})
		leaf4 := make([]entry4, len(starts))
		for i := range starts {
			leaf4[i] = entry4{uint32(starts[i].lo), rules[i]}
		}
		ts[q].v4 = newTree4(leaf4)
		starts, rules = flatten(b.v6[q], u128{math.MaxUint64, math.MaxUint64})
		leaf6 := make([]entry6, len(starts))
		for i := range starts {
			leaf6[i] = entry6{starts[i], rules[i]}
		}
		ts[q].v6 = newTree6(leaf6)
	}
	return ts
}

// flatten turns spans (which, being prefixes, are nested or disjoint) into
// range starts and winning rules. It sweeps the spans in address order
// keeping the chain of spans that enclose the current point on a stack;
// each stack entry carries the best rule of itself and its encloser.
func flatten(spans []span, max u128) ([]u128, []uint32) {
	if len(spans) == 0 {
		return nil, nil
	}
	slices.SortFunc(spans, func(a, b span) int {
		if a.first != b.first {
			return cmpU128(a.first, b.first)
		}
		return cmpU128(b.last, a.last) // enclosing span first
	})
	var starts []u128
	var rules []uint32
	emit := func(at u128, rule uint32) {
		if n := len(starts); n > 0 && starts[n-1] == at {
			rules[n-1] = rule // a later event at the same point wins
			return
		}
		starts = append(starts, at)
		rules = append(rules, rule)
	}
	type open struct {
		last u128
		best uint32
	}
	var stack []open
	top := func() uint32 {
		if len(stack) == 0 {
			return noRule
		}
		return stack[len(stack)-1].best
	}
	closeBefore := func(at u128, all bool) {
		for len(stack) > 0 && (all || stack[len(stack)-1].last.less(at)) {
			ended := stack[len(stack)-1].last
			stack = stack[:len(stack)-1]
			if ended != max {
				emit(ended.addOne(), top())
			}
		}
	}
	emit(u128{}, noRule)
	for _, s := range spans {
		closeBefore(s.first, false)
		best := min(s.rule, top())
		emit(s.first, best)
		stack = append(stack, open{s.last, best})
	}
	closeBefore(u128{}, true)
	return merge(starts, rules)
}

// merge drops range starts whose rule equals the previous range's.
func merge(starts []u128, rules []uint32) ([]u128, []uint32) {
	n := 0
	for i := range starts {
		if n > 0 && rules[n-1] == rules[i] {
			continue
		}
		starts[n], rules[n] = starts[i], rules[i]
		n++
	}
	return slices.Clip(starts[:n]), slices.Clip(rules[:n])
}

func cmpU128(a, b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

// compile builds the lookup tables for rules; ifaces are the interface
// addresses that samehost and samenet stand for.
func compile(rules []Rule, ifaces []netip.Prefix) *List {
	var allB builder
	namedB := map[string]*builder{}
	var ssl []sslRule
	for i := range rules {
		r := &rules[i]
		prefixes := expand(r.Addr, ifaces)
		if r.SSL {
			ssl = append(ssl, sslRule{index: uint32(i), prefixes: prefixes})
			continue
		}
		targets := []*builder{&allB}
		if r.Listeners != nil {
			targets = targets[:0]
			for _, name := range r.Listeners {
				b := namedB[name]
				if b == nil {
					b = &builder{}
					namedB[name] = b
				}
				targets = append(targets, b)
			}
		}
		for _, b := range targets {
			for _, prefix := range prefixes {
				b.add(r.Proto, prefix, uint32(i))
			}
		}
	}
	l := &List{rules: rules, all: allB.build(), named: make(map[string]*tableSet, len(namedB)), ssl: ssl}
	for name, b := range namedB {
		ts := b.build()
		l.named[name] = &ts
	}
	return l
}

var (
	all4 = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	all6 = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
)

// expand returns the prefixes an address column covers.
func expand(a Address, ifaces []netip.Prefix) []netip.Prefix {
	switch a.Kind {
	case AddrAll:
		return []netip.Prefix{all4, all6}
	case AddrSameHost:
		out := make([]netip.Prefix, 0, len(ifaces))
		for _, p := range ifaces {
			if p.IsValid() {
				ip := p.Addr().Unmap().WithZone("")
				out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
			}
		}
		return out
	case AddrSameNet:
		out := make([]netip.Prefix, 0, len(ifaces))
		for _, p := range ifaces {
			if p.IsValid() {
				out = append(out, canonical(netip.PrefixFrom(p.Addr().WithZone(""), p.Bits())))
			}
		}
		return out
	}
	return []netip.Prefix{a.Prefix}
}

// systemInterfaces lists this machine's interface addresses with their
// prefix lengths.
func systemInterfaces() ([]netip.Prefix, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ipnet, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipnet.IP)
		if !ok {
			continue
		}
		ones, bits := ipnet.Mask.Size()
		if bits == 0 {
			continue // a non-canonical mask; no subnet to speak of
		}
		if ip.Is4In6() && bits == 32 {
			ip = ip.Unmap() // a 4-byte mask goes with the IPv4 address
		}
		out = append(out, netip.PrefixFrom(ip, ones+ip.BitLen()-bits))
	}
	return out, nil
}
