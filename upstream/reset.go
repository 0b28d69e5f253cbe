package upstream

import (
	"errors"
	"net"
	"slices"
)

// Reset says which outages Set.Reset ends: those that a change of how the
// upstreams are dialled may have ended.
type Reset int

const (
	// ResetAll ends every outage: the dial itself changed (its timeout,
	// the failover list).
	ResetAll Reset = iota + 1
	// ResetReached ends the outages whose latest failure came after the
	// connect (a TLS handshake, a PROXY header): what is sent over the
	// connection changed (upstream_tls, its CA, client certificate or
	// server name, proxy_protocol). An address whose connect failed
	// (refused, unreachable, no answer) stays down: no such change makes
	// it answer, and a black-holed one would cost the next client its
	// connect timeout.
	ResetReached
)

// Reset ends the outages which selects and returns the upstreams (as
// configured) it brought back, each once, in config order; nil when none
// was down so. An address brought back is trusted at once, as at start,
// and its re-try ends; the next connection dials it. It logs nothing: the
// caller knows why (a reload, and what it changed) and says so.
//
// Without it, a reload that fixed what failed (a CA file, an expired
// client certificate) left the upstream down until its next re-try, up to
// 30 s, and every client meanwhile was closed at once: the admin who
// tested the fix saw it fail.
func (s *Set) Reset(which Reset) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ends := func(down, afterConnect bool) bool {
		return down && (which == ResetAll || which == ResetReached && afterConnect)
	}
	for addr, o := range s.inherited { // a name's address not resolved yet
		if ends(true, o.reached) {
			delete(s.inherited, addr)
		}
	}
	back := make(map[*entry]bool)
	for _, t := range s.targets {
		if ends(!t.up.Load(), t.reached) {
			t.up.Store(true) // its re-try loop ends at its next wake (stillDown)
			back[t.entry] = true
		}
	}
	if len(back) == 0 {
		return nil
	}
	s.pending = slices.DeleteFunc(s.pending, func(t *Target) bool { return t.up.Load() })
	// A port with an upstream back is not in an outage any more: should
	// it fail again, that is a new one, and logged.
	for i, list := range s.lists {
		if slices.ContainsFunc(list, func(e *entry) bool { return back[e] }) {
			s.outage[i].Store(false)
		}
	}
	var specs []string
	for _, e := range s.entries {
		if back[e] {
			specs = append(specs, e.spec)
		}
	}
	return specs
}

// reached reports whether the failure err came after the connect was made:
// anything but the error of a dial (a *net.OpError "dial", whatever made
// the connection: net.Dialer, forward's event loop, a probe).
func reached(err error) bool {
	var op *net.OpError
	return !(errors.As(err, &op) && op.Op == "dial")
}
