package lint

import (
	"fmt"
	"net/netip"

	"github.com/edgerelay/relay/acl"
)

// maxLineWarnings bounds the warnings of one kind about single lines of the
// ACL file: a generated blocklist can hold thousands of lines under broader
// ones, each a log line at every start and reload. The rest are summed in
// one warning.
const maxLineWarnings = 20

// checkLines warns of lines written with host bits set (203.0.113.7/24:
// all of 203.0.113.0/24, maybe meant as one address) and of lines that
// never decide because an earlier line matches all they match.
func checkLines(rules []acl.Rule) []Warning {
	var bits, dead []Warning
	var bitsAt, deadAt []int
	for i := range rules {
		a := &rules[i].Addr
		if a.Written == "" {
			continue
		}
		bitsAt = append(bitsAt, rules[i].Line)
		bits = append(bits, Warning{Key: "acl.file", Msg: fmt.Sprintf("%s: %s has host bits set: it matches all of %s (write %s for one address)",
			rules[i].Where(), a.Written, a.Prefix, netip.PrefixFrom(a.Host, a.Host.BitLen()))})
	}
	var s shadows
	for _, sh := range s.find(rules) {
		r, by := &rules[sh.line], &rules[sh.by]
		msg := fmt.Sprintf("%s: never decides: line %d (%s) matches every connection it matches first", r.Where(), by.Line, by)
		switch {
		case by.Allow && !r.Allow:
			msg += ", and allows what this line would reject"
		case !by.Allow && r.Allow:
			msg += ", and rejects what this line would allow"
		}
		deadAt = append(deadAt, r.Line)
		dead = append(dead, Warning{Key: "acl.file", Msg: msg})
	}
	file := ""
	if len(rules) > 0 {
		file = rules[0].File
	}
	return append(capLines(bits, bitsAt, file, "has host bits set", "have host bits set"),
		capLines(dead, deadAt, file, "never decides", "never decide")...)
}

// capLines keeps the first maxLineWarnings of ws, warnings about the lines
// at, and sums the rest in one that says what they are (one, many: the
// verb for one line and for several).
func capLines(ws []Warning, at []int, file, one, many string) []Warning {
	if len(ws) <= maxLineWarnings {
		return ws
	}
	more := len(ws) - maxLineWarnings
	what := fmt.Sprintf("%d more lines %s", more, many)
	if more == 1 {
		what = "1 more line " + one
	}
	return append(ws[:maxLineWarnings:maxLineWarnings], Warning{Key: "acl.file", Msg: fmt.Sprintf("%s: %s, from line %d on (only the first %d are listed)",
		file, what, at[maxLineWarnings], maxLineWarnings)})
}

// shadow is a line that never decides: rules[line] is covered by the
// earlier rules[by] (acl.Rule.Covers), the first line that covers it.
type shadow struct{ line, by int }

// shadows finds the lines that never decide. Comparing each line with
// every earlier one is n²/2 Covers calls, 5e9 for a 100 000-line
// blocklist (minutes, at every reload); a line can only be covered by a
// line whose address is all, the same keyword, or a prefix containing its
// own, so earlier lines are indexed by address and a prefix line looks up
// only its own prefix shortened to each length the index holds. A line
// found covered is left out of the index: what it covers, the line
// covering it covers too (Covers is transitive), and from earlier on.
type shadows struct {
	byPrefix map[netip.Prefix][]int // earlier lines by (masked) prefix, in file order
	lens     [2][129]bool           // the prefix lengths byPrefix holds, per family (0: IPv4)
	byKind   [4][]int               // earlier lines by acl.AddrKind: all, samehost, samenet
	compared int                    // Covers calls, for the test that keeps this near linear
}

func (s *shadows) find(rules []acl.Rule) []shadow {
	s.byPrefix = make(map[netip.Prefix][]int)
	var found []shadow
	for i := range rules {
		r := &rules[i]
		by := s.first(rules, s.byKind[acl.AddrAll], r, -1)
		switch r.Addr.Kind {
		case acl.AddrPrefix:
			p := r.Addr.Prefix
			fam := family(p.Addr())
			for bits := 0; bits <= p.Bits(); bits++ {
				if s.lens[fam][bits] {
					k, _ := p.Addr().Prefix(bits)
					by = s.first(rules, s.byPrefix[k], r, by)
				}
			}
		case acl.AddrSameHost, acl.AddrSameNet:
			by = s.first(rules, s.byKind[r.Addr.Kind], r, by)
		}
		if by >= 0 {
			found = append(found, shadow{line: i, by: by})
			continue
		}
		if r.Addr.Kind == acl.AddrPrefix {
			p := r.Addr.Prefix
			s.byPrefix[p] = append(s.byPrefix[p], i)
			s.lens[family(p.Addr())][p.Bits()] = true
		} else {
			s.byKind[r.Addr.Kind] = append(s.byKind[r.Addr.Kind], i)
		}
	}
	return found
}

// first returns the first line among candidates (in file order) that
// covers r, if it comes before best (-1: none yet); else best.
func (s *shadows) first(rules []acl.Rule, candidates []int, r *acl.Rule, best int) int {
	for _, j := range candidates {
		if best >= 0 && j >= best {
			break
		}
		s.compared++
		if rules[j].Covers(r) {
			return j
		}
	}
	return best
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}
