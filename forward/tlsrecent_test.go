package forward

import (
	"crypto/tls"
	"reflect"
	"testing"
)

// TestHandshakesRecent: the latest failure of each reason is kept until
// its peer completes a handshake; another peer's success leaves it, so
// one box office refused among several that connect fine still shows.
func TestHandshakesRecent(t *testing.T) {
	var h Handshakes
	h.fail(TLSExpired, "192.0.2.7")
	h.fail(TLSNotTLS, "198.51.100.1") // a scanner
	h.fail(TLSUnknownCA, "192.0.2.8")
	h.count(tls.ConnectionState{}, "192.0.2.9") // another box office, fine
	h.count(tls.ConnectionState{}, "192.0.2.8") // fixed its CA
	lastOK, failing := h.Recent()
	if lastOK.IsZero() {
		t.Error("last ok is zero after two handshakes")
	}
	var got [][2]string
	for _, f := range failing {
		got = append(got, [2]string{f.Reason, f.Peer})
	}
	want := [][2]string{{TLSNotTLS, "198.51.100.1"}, {TLSExpired, "192.0.2.7"}} // newest first
	if !reflect.DeepEqual(got, want) {
		t.Errorf("failing %v, want %v", got, want)
	}
	if h.OK.Load() != 2 || h.Failed()[TLSExpired] != 1 {
		t.Errorf("counts %d ok %v failed, want 2 and one expired", h.OK.Load(), h.Failed())
	}
}
