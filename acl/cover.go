package acl

import "slices"

// Covers reports whether r matches every connection that o matches, so
// that o, written after r, can never decide. It judges from the two lines
// alone, and says false where it cannot tell:
//   - TYPE: host covers every type, tcp covers tcp and hostssl (a TLS client
//     is a TCP client to them), udp covers udp, and hostssl covers hostssl
//     whose cn= it covers: no cn= covers any, an exact name covers only
//     itself, and a glob covers a name it fits; of two globs, only one of
//     stars alone is known to cover the other.
//   - LISTENER: all covers any list, a list covers the lists within it.
//   - ADDRESS: all covers everything, a prefix covers the prefixes of its
//     family within it, samehost and samenet cover only themselves: which
//     addresses they stand for is the box's business, not the file's.
func (r *Rule) Covers(o *Rule) bool {
	return r.coversType(o) && r.coversListeners(o) && r.Addr.covers(o.Addr)
}

func (r *Rule) coversType(o *Rule) bool {
	switch {
	case r.SSL:
		return o.SSL && coversPattern(r.CN, o.CN)
	case r.Proto == ProtoAny:
		return true
	}
	return r.Proto == o.Proto // tcp over hostssl too: o.Proto is ProtoTCP there
}

// coversPattern reports whether every certificate name that fits cn
// pattern q fits p as well ("": any certificate, named or not).
func coversPattern(p, q string) bool {
	switch {
	case p == "" || p == q:
		return true
	case q == "":
		return false // a certificate without names fits no pattern
	case allStars(p):
		return true // any name; q fits only names, never ""
	case !slices.Contains([]byte(q), '*'):
		return matchName(p, q) // q fits the one name q
	}
	return false
}

func allStars(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '*' {
			return false
		}
	}
	return true
}

func (r *Rule) coversListeners(o *Rule) bool {
	if r.Listeners == nil {
		return true
	}
	if o.Listeners == nil {
		return false
	}
	for _, name := range o.Listeners {
		if !slices.Contains(r.Listeners, name) {
			return false
		}
	}
	return true
}

func (a Address) covers(b Address) bool {
	switch a.Kind {
	case AddrAll:
		return true
	case AddrPrefix:
		return b.Kind == AddrPrefix && a.Prefix.Bits() <= b.Prefix.Bits() && a.Prefix.Contains(b.Prefix.Addr())
	}
	return a.Kind == b.Kind // samehost, samenet: the same interfaces at any time
}
