package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/headless"
)

// TestPageTLSAttention: a box office whose venue's certificate expired
// and a venue that refused a box office's certificate are on the
// attention list and marked on their cards, the first as a failure, the
// second as a softer note naming the client; a listener whose only
// failed handshakes are scanners' is not. The failed dials marked the
// venue down: TLS FAILING, which says why, is what the list shows.
func TestPageTLSAttention(t *testing.T) {
	browser := headless.New(t)
	now := time.Now()
	box := Snapshot{Listener: "box-office", Mode: "raw", State: StateServing, Listen: "0.0.0.0:9100",
		Upstreams: []Upstream{{Address: "192.0.2.5:9100", Health: HealthDown}}, Conns: &Conns{Accepted: 3},
		TLS: &TLS{Upstream: &Handshakes{OK: 40, Failed: map[string]uint64{"expired": 3},
			Failing: []HandshakeFailure{{Reason: "expired", Peer: "192.0.2.5:9100", At: now.Add(-20 * time.Second)}}}}}
	venue := Snapshot{Listener: "venue", Mode: "tcp", State: StateServing, Listen: "0.0.0.0:9443",
		Upstreams: []Upstream{{Address: "192.0.2.20:9100"}}, Conns: &Conns{Accepted: 90},
		TLS: &TLS{Client: &Handshakes{OK: 90, Failed: map[string]uint64{"not_tls": 7, "unknown_authority": 2},
			Failing: []HandshakeFailure{
				{Reason: "not_tls", Peer: "198.51.100.1", At: now.Add(-time.Second)},
				{Reason: "unknown_authority", Peer: "192.0.2.7", At: now.Add(-time.Minute)}}}}}
	kiosk := Snapshot{Listener: "kiosk", Mode: "tcp", State: StateServing, Listen: "0.0.0.0:8443",
		Upstreams: []Upstream{{Address: "192.0.2.21:80"}}, Conns: &Conns{},
		TLS: &TLS{Client: &Handshakes{Failed: map[string]uint64{"no_certificate": 4, "not_tls": 2},
			Failing: []HandshakeFailure{
				{Reason: "no_certificate", Peer: "198.51.100.2", At: now.Add(-time.Second)},
				{Reason: "not_tls", Peer: "198.51.100.1", At: now.Add(-2 * time.Second)}}}}}
	_, url, stop := running(t, Config{Gather: func() []Snapshot { return []Snapshot{box, venue, kiosk} }})
	defer stop()

	raw, dom := loadPage(t, browser, url+"/", 3*time.Second)
	defer func() {
		if t.Failed() {
			t.Logf("DOM:\n%s", raw)
		}
	}()
	troubled := dom.Find("aria-label", "listeners that need attention")
	want := "box-office TLS FAILING: expired (192.0.2.5:9100) venue CLIENT CERTS REFUSED: unknown_authority (192.0.2.7)"
	if len(troubled) != 1 || troubled[0].Text() != want {
		t.Fatalf("listeners needing attention %v, want %q", troubled, want)
	}
	for name, kind := range map[string]string{"box-office": "badge bad", "venue": "badge warn"} {
		li := dom.Find("data-trouble", name)
		if len(li) != 1 || len(li[0].Find("class", kind)) != 1 || len(li[0].Find("href", "#listener-"+name)) != 1 {
			t.Errorf("overview for %s: %v, want a link to its card and a %q", name, li, kind)
		}
		b := listenerCard(t, dom, name).Find("data-field", "tls.attention")
		if len(b) != 1 || b[0].Attr("class") != kind || !strings.Contains(b[0].Attr("title"), "none of its handshakes succeeded since") {
			t.Errorf("card %s: attention badge %v, want one %q", name, b, kind)
		}
	}
	if f := dom.Find("data-field", "tls.client.failing.unknown_authority"); len(f) != 1 || !strings.HasPrefix(f[0].Text(), "192.0.2.7 at ") {
		t.Errorf("venue's failing handshakes %v, want the client and when", f)
	}
	if k := dom.Find("data-listener", "kiosk"); len(k) != 1 || len(k[0].Find("data-field", "tls.attention")) != 0 || len(dom.Find("data-trouble", "kiosk")) != 0 {
		t.Errorf("kiosk has scanners' failures alone and needs no attention: %v", k)
	}
}
