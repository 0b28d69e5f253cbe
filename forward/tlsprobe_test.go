package forward

import (
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/certs"
	"github.com/edgerelay/relay/internal/world"
)

// TestTLSUpstreamStaysDownWhileCertificateBad: a venue whose certificate
// has expired fails the first client's handshake and is marked down with
// the reason; the background re-tries then handshake too, so it stays down
// (no "a probe answered" after a bare TCP connect) and the next client is
// closed without a handshake of its own. Once the venue has a valid
// certificate the next re-try brings it back, and a job goes through
// intact, on a full handshake: the probe left no ticket in the data path's
// session cache.
func TestTLSUpstreamStaysDownWhileCertificateBad(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t, "venue-ca")
	backend := world.NewBackend(t, hashPrinter)
	crt, key := p.issue(t, certs.KindServer, "venue-2025", time.Now().Add(-48*time.Hour), 24*time.Hour)
	expired, err := certs.LoadServer(certs.ServerFiles{Cert: crt, Key: key, ClientCA: p.path("ca.crt")})
	if err != nil {
		t.Fatal(err)
	}
	venueTLS := certs.NewServer(expired)
	venue := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}, TLS: venueTLS.Config()})
	box := startRelay(t, Config{
		Upstreams:   [][]string{{venue.addr(0)}},
		UpstreamTLS: p.clientTLS(t, p, "boxoffice-1").Config,
	})
	failedAtVenue := func() (n uint64) {
		for _, v := range venue.Stats().Handshakes.Failed() {
			n += v
		}
		return n
	}

	expectClosed(t, box.dial(t, 0), 5*time.Second)
	down := box.logs.Wait(t, `"message":"upstream down"`)
	if !strings.Contains(down, "(expired)") {
		t.Errorf("the down line does not name the reason expired: %s", down)
	}
	// The client and two re-tries (after 1 s and 3 s) each reached the
	// venue; with a TCP probe the first re-try would have brought it up.
	world.Eventually(t, "two re-tries of the venue", func() bool {
		return failedAtVenue() >= 3 || box.logs.Count(`"message":"upstream up"`) > 0
	})
	if n := box.logs.Count("a probe answered"); n != 0 {
		t.Fatalf("a re-try brought the venue with an expired certificate back up:\n%s", box.logs)
	}
	expectClosed(t, box.dial(t, 0), time.Second)
	if got := box.Stats().UpstreamHandshakes.Failed(); got[TLSExpired] != 1 || len(got) != 1 {
		t.Errorf("box upstream handshakes failed = %v, want expired once: the second client paid a handshake", got)
	}

	crt, key = p.issue(t, certs.KindServer, "venue-2026", time.Time{}, time.Hour)
	renewed, err := certs.LoadServer(certs.ServerFiles{Cert: crt, Key: key, ClientCA: p.path("ca.crt")})
	if err != nil {
		t.Fatal(err)
	}
	venueTLS.Store(renewed)
	up := box.logs.Wait(t, `"message":"upstream up"`)
	if !strings.Contains(up, "a probe answered") {
		t.Errorf("up line: %s", up)
	}
	for i, n := range []int64{300 << 10, 777} {
		if got, want := printJob(t, box.addr(0), uint64(i), n), wantReply(uint64(i), n); got != want {
			t.Fatalf("job %d after the renewal: reply %q, want %q", i, got, want)
		}
	}
	if st := &box.Stats().UpstreamHandshakes; st.OK.Load() != 1 || st.Resumed.Load() != 1 {
		t.Errorf("box upstream handshakes: %d full, %d resumed; want 1 and 1", st.OK.Load(), st.Resumed.Load())
	}
	if n := box.logs.Count(`"message":"upstream down"`); n != 1 {
		t.Errorf("%d down lines, want 1:\n%s", n, box.logs)
	}
	if n := box.logs.Count(`"message":"upstream up"`); n != 1 {
		t.Errorf("%d up lines, want 1:\n%s", n, box.logs)
	}
}
