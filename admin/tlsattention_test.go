package admin

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestTLSAttention is the rule that puts a TLS listener on the attention
// list. Handshakes.Failing holds only failures whose peer has not
// succeeded since (forward clears them), so "failure then success" of the
// same peer is a failure no longer listed.
func TestTLSAttention(t *testing.T) {
	now := time.Date(2026, 11, 29, 13, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	fail := func(reason, peer string, at time.Time) HandshakeFailure {
		return HandshakeFailure{Reason: reason, Peer: peer, At: at}
	}
	cases := []struct {
		name string
		tls  *TLS
		want string // side/reason/peer, "" for none
	}{
		{"plain", nil, ""},
		{"upstream failures only", &TLS{Upstream: &Handshakes{Failing: []HandshakeFailure{
			fail("expired", "192.0.2.5:9100", ago(20*time.Second))}}}, "upstream/expired/192.0.2.5:9100"},
		{"upstream failure then success", &TLS{Upstream: &Handshakes{OK: 3, Failed: map[string]uint64{"expired": 1}}}, ""},
		{"upstream timeout counts too", &TLS{Upstream: &Handshakes{Failing: []HandshakeFailure{
			fail("timeout", "192.0.2.5:9100", ago(time.Minute))}}}, "upstream/timeout/192.0.2.5:9100"},
		{"upstream old failure past the window", &TLS{Upstream: &Handshakes{Failing: []HandshakeFailure{
			fail("unknown_authority", "192.0.2.5:9100", ago(11*time.Minute))}}}, ""},
		{"client certificate refused", &TLS{Client: &Handshakes{OK: 50, Failing: []HandshakeFailure{
			fail("not_tls", "198.51.100.1", ago(time.Second)),
			fail("expired", "192.0.2.7", ago(2*time.Minute))}}}, "client/expired/192.0.2.7"},
		{"client scanner garbage only", &TLS{Client: &Handshakes{Failing: []HandshakeFailure{
			fail("not_tls", "198.51.100.1", ago(time.Second)),
			fail("protocol", "198.51.100.2", ago(2*time.Second)),
			fail("closed", "198.51.100.3", ago(3*time.Second)),
			fail("timeout", "198.51.100.4", ago(4*time.Second)),
			fail("no_certificate", "198.51.100.5", ago(5*time.Second))}}}, ""},
		{"client failure then success", &TLS{Client: &Handshakes{OK: 1, Failed: map[string]uint64{"unknown_authority": 1}}}, ""},
		{"client old failure past the window", &TLS{Client: &Handshakes{Failing: []HandshakeFailure{
			fail("bad_certificate", "192.0.2.7", ago(30*time.Minute))}}}, ""},
		{"upstream before client", &TLS{
			Client:   &Handshakes{Failing: []HandshakeFailure{fail("expired", "192.0.2.7", ago(time.Second))}},
			Upstream: &Handshakes{Failing: []HandshakeFailure{fail("closed", "192.0.2.5:9100", ago(5*time.Minute))}},
		}, "upstream/closed/192.0.2.5:9100"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if a := tlsAttention(now, tc.tls); a != nil {
				got = strings.Join([]string{a.Side, a.Reason, a.Peer}, "/")
			}
			if got != tc.want {
				t.Errorf("attention %q, want %q", got, tc.want)
			}
		})
	}
}

// TestStatusJSONTLSAttention: /status.json carries the recent facts of
// each side and the attention the rule draws from them, and leaves the
// caller's sections as they were.
func TestStatusJSONTLSAttention(t *testing.T) {
	now := time.Date(2026, 11, 29, 13, 0, 0, 0, time.UTC)
	ok := now.Add(-time.Hour)
	box := &TLS{Upstream: &Handshakes{OK: 4, Failed: map[string]uint64{"expired": 2}, LastOK: &ok,
		Failing: []HandshakeFailure{{Reason: "expired", Peer: "192.0.2.5:9100", At: now.Add(-30 * time.Second)}}}}
	venue := &TLS{Client: &Handshakes{Failed: map[string]uint64{"not_tls": 9}}}
	sr := &statusReader{
		gather: func() []Snapshot {
			return []Snapshot{
				{Listener: "box", Mode: "raw", State: StateServing, TLS: box},
				{Listener: "venue", Mode: "tcp", State: StateServing, TLS: venue},
			}
		},
		now: func() time.Time { return now },
	}
	body := httptestGet(t, http.HandlerFunc(sr.serveJSON), "/status.json")
	var st struct {
		Listeners []struct {
			Name string         `json:"name"`
			TLS  map[string]any `json:"tls"`
		} `json:"listeners"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Listeners) != 2 {
		t.Fatalf("%d listeners in %s", len(st.Listeners), body)
	}
	att, _ := json.Marshal(st.Listeners[0].TLS["attention"])
	if want := `{"at":"2026-11-29T12:59:30Z","peer":"192.0.2.5:9100","reason":"expired","side":"upstream"}`; string(att) != want {
		t.Errorf("box attention %s, want %s", att, want)
	}
	up, _ := st.Listeners[0].TLS["upstream"].(map[string]any)
	if up["last_ok"] != "2026-11-29T12:00:00Z" {
		t.Errorf("box last_ok %v", up["last_ok"])
	}
	if _, ok := st.Listeners[1].TLS["attention"]; ok {
		t.Errorf("venue with scanners' failures alone has attention: %v", st.Listeners[1].TLS)
	}
	if c, _ := st.Listeners[1].TLS["client"].(map[string]any); c == nil || c["failing"] == nil {
		t.Errorf("venue client failing should read [], not null or missing: %v", st.Listeners[1].TLS)
	}
	if box.Attention != nil || venue.Client.Failing != nil {
		t.Error("the caller's sections were changed")
	}
}
