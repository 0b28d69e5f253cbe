package admin

import "time"

// tlsAttentionWindow is how long a failed handshake whose peer has not
// succeeded since keeps a listener on the attention list. While the peer
// stays broken every try fails again and renews it, and a success of the
// same peer ends it at once; the window only ages out a fault nobody has
// met again: long enough that the print job that failed ten minutes ago
// is still explained when the admin looks, short enough that a peer gone
// for good (a laptop retired with its old certificate) drops off.
const tlsAttentionWindow = 10 * time.Minute

// The values of TLSAttention.Side.
const (
	SideUpstream = "upstream"
	SideClient   = "client"
)

// tlsAttention is the rule that puts a TLS listener on the attention list.
//
// Upstream side: any handshake with an upstream that failed within the
// window, for any reason, with no handshake with that upstream completed
// since. The relay dials the venue only for its own clients, so nobody
// else's noise is in these: an expired certificate, a changed CA, a
// refused client certificate or a TLS endpoint that is gone fails every
// print job until it is fixed.
//
// Client side, softer: a client certificate refused within the window
// (bad_certificate, unknown_authority, expired), its client having
// completed no handshake since. Scanners are what else fails a
// listener's handshakes, and they send plaintext or garbage (not_tls,
// protocol), hang up (closed, timeout) or finish the handshake without a
// certificate (no_certificate): none of those says that a box office is
// locked out, so they are left out. Another client's success does not
// clear it: one box office refused among several that connect fine is
// what the admin must see.
//
// The upstream side comes first: it breaks every connection.
func tlsAttention(now time.Time, t *TLS) *TLSAttention {
	if t == nil {
		return nil
	}
	if f, ok := standing(now, t.Upstream, func(string) bool { return true }); ok {
		return &TLSAttention{Side: SideUpstream, HandshakeFailure: f}
	}
	if f, ok := standing(now, t.Client, clientCertRefused); ok {
		return &TLSAttention{Side: SideClient, HandshakeFailure: f}
	}
	return nil
}

// clientCertRefused reports whether a client handshake failed on the
// client's certificate itself.
func clientCertRefused(reason string) bool {
	switch reason {
	case "bad_certificate", "unknown_authority", "expired":
		return true
	}
	return false
}

// standing returns the newest failure of h that counts and is within the
// window (h.Failing holds only those whose peer has not succeeded since).
func standing(now time.Time, h *Handshakes, counts func(reason string) bool) (HandshakeFailure, bool) {
	if h == nil {
		return HandshakeFailure{}, false
	}
	for _, f := range h.Failing { // newest first
		if now.Sub(f.At) > tlsAttentionWindow {
			break
		}
		if counts(f.Reason) {
			return f, true
		}
	}
	return HandshakeFailure{}, false
}

// fillTLSAttention sets the Attention of each listener's TLS section,
// copying the section first: it may be the caller's.
func fillTLSAttention(now time.Time, listeners []Snapshot) {
	for i := range listeners {
		s := &listeners[i]
		if s.TLS == nil {
			continue
		}
		t := *s.TLS
		t.Attention = tlsAttention(now, &t)
		s.TLS = &t
	}
}
