package config

import (
	"net/netip"
	"slices"
	"strings"
)

// portRef is one listen port of one listener: Listeners[l].Listen[k].
type portRef struct{ l, k int }

// hop leaves a listen port (from) by one of its upstream entries.
type hop struct {
	from     portRef
	upstream string // the entry: "127.0.0.1:7002"
}

// checkLoops refuses upstreams that lead through other listeners of the
// config back to the listener they start from: every connection would go
// round the relay until max_conns or the file descriptors run out. As for
// checkSelfLoop (which reports a listener that is its own upstream), only
// addresses certain to be this box's count. A ring is reported once, at
// the last of its listeners in the file, with the way round.
func checkLoops(ls []Listener, p *problems) {
	g := loopGraph{ls: ls, own: make([]netip.Addr, len(ls)), first: make([]uint16, len(ls)), state: make([][]int8, len(ls))}
	for i := range ls {
		g.state[i] = make([]int8, len(ls[i].Listen))
		if len(ls[i].Listen) == 0 {
			continue
		}
		// Every port of a listener has its address; they follow each other.
		if hp, err := ParseHostPorts(ls[i].Listen[0]); err == nil {
			g.own[i], _ = checkListenHost(hp.Host)
			g.first[i] = hp.First
		}
	}
	reported := make(map[int]bool) // one problem per listener, however many of its ports loop
	for i := range ls {
		for k := range ls[i].Listen {
			for _, ring := range g.walk(portRef{i, k}) {
				last := slices.MaxFunc(ring, func(a, b hop) int { return a.from.l - b.from.l }).from.l
				if !reported[last] {
					reported[last] = true
					at, way := g.describe(ring, last)
					p.addf(indexPath("listeners", last)+".upstream", "%s leads back to this listener (%s): every connection would loop through the relay", at, way)
				}
			}
		}
	}
}

// loopGraph finds rings among the listen ports of ls by depth-first search.
type loopGraph struct {
	ls    []Listener
	own   []netip.Addr // per listener: its listen address; invalid: none
	first []uint16     // per listener: its first listen port
	state [][]int8     // per listen port: 1 on the current path, 2 done
	path  []hop        // how the search came to the current port
}

// reaches returns the listen port of the config that a connection over
// proto to ap certainly arrives at, other than from.
func (g *loopGraph) reaches(from portRef, proto string, ap netip.AddrPort) (portRef, bool) {
	ip := ap.Addr()
	for l := range g.ls {
		own := g.own[l]
		k := int(ap.Port()) - int(g.first[l])
		switch {
		case !own.IsValid() || g.ls[l].Mode.Proto() != proto || k < 0 || k >= len(g.ls[l].Listen):
		case arrivesAt(ip, own):
			if to := (portRef{l, k}); to != from {
				return to, true // listen addresses do not overlap (checkOverlaps): one at most
			}
		}
	}
	return portRef{}, false
}

// walk searches from r and returns each ring it closes, as the hops round it.
func (g *loopGraph) walk(r portRef) [][]hop {
	if g.state[r.l][r.k] != 0 || r.k >= len(g.ls[r.l].Upstreams) {
		return nil
	}
	g.state[r.l][r.k] = 1
	var rings [][]hop
	for _, u := range g.ls[r.l].Upstreams[r.k] {
		ap, err := netip.ParseAddrPort(u)
		if err != nil {
			continue // a host name: not certain to be this box
		}
		to, ok := g.reaches(r, g.ls[r.l].Mode.Proto(), ap)
		if !ok {
			continue
		}
		g.path = append(g.path, hop{from: r, upstream: u})
		switch g.state[to.l][to.k] {
		case 1: // back on the path: the hops from to onwards are a ring
			start := slices.IndexFunc(g.path, func(h hop) bool { return h.from == to })
			rings = append(rings, slices.Clone(g.path[start:]))
		case 0:
			rings = append(rings, g.walk(to)...)
		}
		g.path = g.path[:len(g.path)-1]
	}
	g.state[r.l][r.k] = 2
	return rings
}

// describe returns the upstream entry by which listener l leaves ring, and
// the way round from l: "b 0.0.0.0:7002 -> a 127.0.0.1:7001 -> b 0.0.0.0:7002".
func (g *loopGraph) describe(ring []hop, l int) (string, string) {
	start := slices.IndexFunc(ring, func(h hop) bool { return h.from.l == l })
	ring = append(slices.Clone(ring[start:]), ring[:start]...)
	steps := make([]string, 0, len(ring)+1)
	for _, h := range append(ring, ring[0]) {
		steps = append(steps, g.ls[h.from.l].Name+" "+g.ls[h.from.l].Listen[h.from.k])
	}
	return ring[0].upstream, strings.Join(steps, " -> ")
}

// arrivesAt reports whether a connection to ip certainly arrives at a
// socket listening on own (unmapped; unspecified: every address). Linux
// sends a connect to the unspecified address to the loopback of its
// family (0.0.0.0 to 127.0.0.1, [::] to [::1]), so that is where it lands.
func arrivesAt(ip, own netip.Addr) bool {
	ip = ip.Unmap()
	switch {
	case ip == netip.IPv4Unspecified():
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	case ip == netip.IPv6Unspecified():
		ip = netip.IPv6Loopback()
	}
	return ip == own || own.IsUnspecified() && ip.IsLoopback()
}
