package acl

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// sameRule compares what a rule means, not where or how it was written
// (Addr.Written and Addr.Host say how).
func sameRule(a, b Rule) bool {
	return a.Proto == b.Proto && slices.Equal(a.Listeners, b.Listeners) &&
		a.Addr.Kind == b.Addr.Kind && a.Addr.Prefix == b.Addr.Prefix &&
		a.Allow == b.Allow && a.SSL == b.SSL && a.CN == b.CN
}

func TestFormatRoundTrip(t *testing.T) {
	in := "# venue\nhost cms-ftp,rtb 192.168.1.0/24 allow\n" +
		"tcp ticket-printer 10.8.0.0 255.255.0.0 allow\n" +
		"udp all \\\n samenet allow\nhost all samehost allow\n" +
		"host web ::ffff:10.0.0.0/104 reject\nhost web 2001:db8::1 ffff:ffff:: allow\n" +
		"host all all reject\n"
	want := "host cms-ftp,rtb 192.168.1.0/24 allow\n" +
		"tcp ticket-printer 10.8.0.0/16 allow\n" +
		"udp all samenet allow\nhost all samehost allow\n" +
		"host web 10.0.0.0/8 reject\nhost web 2001:db8::/32 allow\n" +
		"host all all reject\n"
	var out bytes.Buffer
	if err := mustParse(t, in).Format(&out); err != nil {
		t.Fatal(err)
	}
	if out.String() != want {
		t.Errorf("Format:\n%s\nwant:\n%s", out.String(), want)
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"host all all reject\n",
		"# TYPE LISTENER ADDRESS ACTION\nhost cms-ftp,rtb 192.168.1.0/24 allow\nhost ticket-printer 10.8.0.0 255.255.0.0 allow\nhost all samenet allow\nhost all all reject\n",
		"tcp web 127.0.0.2/32 reject\nudp rtb ::1/128 allow\n",
		"host web, \\\n ftp 2001:db8:: ffff:ffff:: allow # why\r\n",
		"host web ::ffff:10.0.0.0/104 allow\nhost web samehost reject\n",
		"host    cms-ftp  10.0.0.0/33 allow\n",
		"host web 10.0.0.5 allow\n",
		"host ,web all allow\n",
		"\\\n\\\n",
		"host all 0.0.0.0 0.0.0.0 allow",
		"hostssl tunnel all allow cn=boxoffice-*\nhostssl all 10.0.0.0/8 reject cn=Lost-Laptop\nhostssl all samenet allow\n",
		"host tunnel all allow cn=x\n",
		"hostssl tunnel all allow cn=a cn=b\n",
		"hostssl tunnel all allow cn=a,b\n",
		"hostssl tunnel all allow cn=\n",
		"host web 203.0.113.7/24 allow\nhost web 10.8.0.5 255.255.0.0 reject\nhost web ::ffff:10.1.2.3/104 allow\n",
		"host web 2001:db8::1 ffff:ffff:: allow\nhost web 1.2.3.4/0 reject\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		l, err := testOpts.Parse(strings.NewReader(text), "f.conf")
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error %T is not a *ParseError: %v", err, err)
			}
			return
		}
		var first bytes.Buffer
		if err := l.Format(&first); err != nil {
			t.Fatal(err)
		}
		again, err := testOpts.Parse(bytes.NewReader(first.Bytes()), "f.conf")
		if err != nil {
			t.Fatalf("canonical form does not parse: %v\n%s", err, first.String())
		}
		if len(again.rules) != len(l.rules) {
			t.Fatalf("%d rules, %d after round trip", len(l.rules), len(again.rules))
		}
		for i := range l.rules {
			if !sameRule(l.rules[i], again.rules[i]) {
				t.Fatalf("rule %d: %q became %q", i, l.rules[i].String(), again.rules[i].String())
			}
			if a := l.rules[i].Addr; (a.Written != "") != a.Host.IsValid() || a.Written != "" && a.Kind != AddrPrefix {
				t.Fatalf("rule %d: %q has Written %q, Host %v", i, l.rules[i].String(), a.Written, a.Host)
			}
			if w := again.rules[i].Addr.Written; w != "" {
				t.Fatalf("rule %d: canonical form %q has host bits set (%q)", i, again.rules[i].String(), w)
			}
		}
		var second bytes.Buffer
		again.Format(&second)
		if first.String() != second.String() {
			t.Fatalf("canonical form is not stable:\n%s\n---\n%s", first.String(), second.String())
		}
	})
}

// FuzzDecideAgainstFirstMatch is the differential test of the lookup
// tables (table.go, index.go): for rule files and addresses drawn from the
// fuzzer's bytes, Decide must name the same rule as slowDecide, the plain
// "first matching line wins" scan, and never a line an earlier one Covers
// (lint's "never decides"). Probes include both ends of every range a rule
// or interface covers and the addresses just outside, where a flattening
// or search-tree mistake would show.
func FuzzDecideAgainstFirstMatch(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 8, 9, 64, 65, 300} {
		rules := make([]byte, n*ruleBytes)
		for i := range rules {
			rules[i] = byte(rng.Uint32())
		}
		// Long prefixes first and keywords last, as a real file lists
		// them, so the seeds build tables deep enough for the search
		// tree's upper levels.
		for k := range n * 9 / 10 {
			rules[k*ruleBytes+1] |= 0x08 // no keyword
			rules[k*ruleBytes+4] |= 0x40 // a long prefix
		}
		f.Add(rules, []byte{10, 0, 1, 2, 3, 200})
	}
	f.Add([]byte{0xfc, 0, 0, 0, 0, 0x3d, 1, 0, 0, 32}, []byte{}) // all, then a /32 under it
	f.Add([]byte{0x42, 3, 255, 255, 128}, []byte{})              // the last IPv6 address as a /128
	ifaces, _ := testOpts.Interfaces()
	f.Fuzz(func(t *testing.T, ruleData, probeData []byte) {
		ruleData = ruleData[:min(len(ruleData), 320*ruleBytes)] // two tree levels above the leaves; more runs slowly
		text := fuzzRules(ruleData)
		l, err := testOpts.Parse(strings.NewReader(text), "f.conf")
		if err != nil {
			t.Fatalf("generated file does not parse: %v\n%s", err, text)
		}
		probes := []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified(),
			lastAddr(netip.PrefixFrom(netip.IPv4Unspecified(), 0)), lastAddr(netip.PrefixFrom(netip.IPv6Unspecified(), 0))}
		for i := 0; i+ruleBytes <= len(probeData); i += ruleBytes {
			probes = append(probes, fuzzAddr(probeData[i:i+ruleBytes]).Addr())
		}
		edges := func(p netip.Prefix) {
			first, last := p.Masked().Addr(), lastAddr(p)
			probes = append(probes, first, last, first.Prev(), last.Next())
		}
		for _, r := range l.Rules() {
			if r.Addr.Kind == AddrPrefix {
				edges(r.Addr.Prefix)
			}
		}
		for _, p := range ifaces { // samenet, and samehost within it
			edges(p)
			probes = append(probes, p.Addr(), p.Addr().Prev(), p.Addr().Next())
		}
		// A line an earlier one covers (Rule.Covers, what lint warns of)
		// must never decide.
		covered := map[*Rule]*Rule{}
		for j := range l.rules {
			for i := range j {
				if l.rules[i].Covers(&l.rules[j]) {
					covered[&l.rules[j]] = &l.rules[i]
					break
				}
			}
		}
		for _, addr := range probes {
			if !addr.IsValid() {
				continue // Prev of :: or Next of the last address
			}
			if msg := disagreement(l, ifaces, addr); msg != "" {
				t.Fatalf("%s\nfile:\n%s", msg, text)
			}
			for _, listener := range []string{"a", "b", "c"} {
				for proto := range Proto(numProtos) {
					if r := l.Decide(listener, proto, addr).Rule; covered[r] != nil {
						t.Fatalf("Decide(%s, %v, %v) = %s:%d (%s), which %d (%s) covers\nfile:\n%s",
							listener, proto, addr, r.File, r.Line, r, covered[r].Line, covered[r], text)
					}
				}
			}
		}
	})
}

// ruleBytes is how many fuzzer bytes make one rule (or one probe address).
const ruleBytes = 5

// fuzzRules writes one rule per ruleBytes bytes. The first byte picks the
// protocol, the listeners, the action and whether the address is a prefix
// or a keyword; the rest build the prefix.
func fuzzRules(data []byte) string {
	var b strings.Builder
	listeners := []string{"all", "all", "a", "b", "a,b", "b,a", "c", "all"}
	for i := 0; i+ruleBytes <= len(data); i += ruleBytes {
		head := data[i]
		proto := []string{"host", "tcp", "udp", "host"}[head&3]
		action := []string{"reject", "allow"}[head>>5&1]
		addr := fuzzAddr(data[i : i+ruleBytes]).String()
		// One rule in 64 is a keyword: an "all" shadows every line after it
		// in its tables, which would leave them few ranges to search.
		if head>>6 == 3 && data[i+1]&15 < 3 {
			addr = []string{"all", "samehost", "samenet"}[data[i+1]&15]
		}
		fmt.Fprintf(&b, "%s %s %s %s\n", proto, listeners[head>>2&7], addr, action)
	}
	return b.String()
}

// fuzzAddr builds a prefix from five bytes: few base addresses, so that
// prefixes nest and overlap often, with two bytes set by the fuzzer at a
// place it chooses. The family (IPv4, IPv6 or IPv4-mapped IPv6) comes from
// the first byte, the base and place from the second, the length from the
// fifth.
func fuzzAddr(p []byte) netip.Prefix {
	family, at, x, y, bits := p[0]>>6, p[1], p[2], p[3], int(p[4])
	// Most prefixes are long: a short one early in the file shadows
	// everything under it and leaves the tables few ranges to search.
	v4bits := 20 + bits%13
	if bits>>6 == 0 {
		v4bits = bits % 33
	}
	if family == 0 || family == 3 {
		a := [4]byte{[]byte{10, 192, 0, 255}[at&3], at >> 2 & 3, x, y}
		return netip.PrefixFrom(netip.AddrFrom4(a), v4bits)
	}
	if family == 2 {
		a := netip.AddrFrom4([4]byte{10, at & 3, x, y}).As16()
		return netip.PrefixFrom(netip.AddrFrom16(a), 96+v4bits)
	}
	var a [16]byte
	a[0] = []byte{0x20, 0xfd, 0x00, 0xff}[at&3]
	if a[0] == 0xff {
		for i := range a {
			a[i] = 0xff // so the last address and its neighbours are reached
		}
	}
	pos := int(at>>2) % 15
	a[pos], a[pos+1] = x, y
	v6bits := min(128, 8*(pos+2)+bits%9) // about where the fuzzer's bytes end
	if bits>>6 == 0 {
		v6bits = bits % 129
	}
	return netip.PrefixFrom(netip.AddrFrom16(a), v6bits)
}

// lastAddr is the highest address of p, computed from its bytes.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
