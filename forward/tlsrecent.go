package forward

import (
	"slices"
	"sync"
	"time"
)

// HandshakeFailure is the latest failed handshake of one reason with one
// side of a listener.
type HandshakeFailure struct {
	Reason string    // as the reason label: TLSExpired, TLSUnknownCA, ...
	Peer   string    // the client's IP (not its port: each connection has its own), or the upstream as configured
	At     time.Time // when it failed
}

// recent is what the counts cannot say: whether a peer that failed has
// succeeded since. A status reader tells a broken peer (a box office with
// an expired certificate, a venue whose CA changed) from one bad moment
// by it. It keeps the latest failure of each reason, forgotten once its
// peer completes a handshake, so it is bounded (one entry a reason)
// whoever connects. A success takes the lock once: a full handshake costs
// a signature, a thousand times more.
type recent struct {
	mu      sync.Mutex // guards the following
	lastOK  time.Time
	failing [numHandshakeReason]HandshakeFailure // by reason index; zero At: none
}

// ok notes a completed handshake with peer at now.
func (r *recent) ok(peer string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastOK = now
	for i := range r.failing {
		if r.failing[i].Peer == peer {
			r.failing[i] = HandshakeFailure{}
		}
	}
}

// failed notes a failed handshake with peer at now, reason index i.
func (r *recent) failed(i int, peer string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failing[i] = HandshakeFailure{Reason: handshakeReasons[i], Peer: peer, At: now}
}

// Recent returns when the last handshake succeeded (zero: none yet) and,
// newest first, the latest failure of each reason whose peer has not
// completed a handshake since.
func (h *Handshakes) Recent() (lastOK time.Time, failing []HandshakeFailure) {
	h.recent.mu.Lock()
	defer h.recent.mu.Unlock()
	for _, f := range h.recent.failing {
		if !f.At.IsZero() {
			failing = append(failing, f)
		}
	}
	slices.SortFunc(failing, func(a, b HandshakeFailure) int { return b.At.Compare(a.At) })
	return h.recent.lastOK, failing
}
