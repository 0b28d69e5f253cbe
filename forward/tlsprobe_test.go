package forward

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
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

// TestProbeTLS: the probe is a full handshake each time (no session
// cache: the second probe of a venue does not resume), preceded by a
// header naming no client when the listener sends PROXY headers, and
// fails with the reason a client's dial would give.
func TestProbeTLS(t *testing.T) {
	checkLeaks(t)
	p, impostor := newPKI(t, "venue-ca"), newPKI(t, "impostor-ca")
	backend := world.NewBackend(t, hashPrinter)
	expiredCrt, expiredKey := p.issue(t, certs.KindServer, "venue-2025", time.Now().Add(-48*time.Hour), 24*time.Hour)
	expired, err := certs.LoadServer(certs.ServerFiles{Cert: expiredCrt, Key: expiredKey})
	if err != nil {
		t.Fatal(err)
	}
	box := p.clientTLS(t, p, "boxoffice-1")
	fronts := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	for _, tc := range []struct {
		name   string
		venue  *certs.Server
		proxy  int
		reason string // empty: the probe succeeds
	}{
		{"valid", p.serverTLS(t, p.path("ca.crt")), 0, ""},
		{"proxy v1", p.serverTLS(t, p.path("ca.crt")), 1, ""},
		{"proxy v2", p.serverTLS(t, p.path("ca.crt")), 2, ""},
		{"expired", certs.NewServer(expired), 0, TLSExpired},
		{"other CA", impostor.serverTLS(t, ""), 0, TLSUnknownCA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Upstreams: [][]string{{backend.Addr()}}, TLS: tc.venue.Config()}
			if tc.proxy != 0 {
				cfg.AcceptProxy = fronts
			}
			venue := startRelay(t, cfg)
			handshakes := uint64(2) // the venue's, when the probes are done
			if tc.reason == "" && tc.proxy == 0 {
				handshakes++
				// A job leaves a ticket in box's cache, which probes must not use.
				if got, want := printJobTLS(t, venue.addr(0), box), wantReply(9, 1000); got != want {
					t.Fatalf("job: %q, want %q", got, want)
				}
			}
			probe := ProbeTLS(box.Config, tc.proxy)
			for range 2 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				c, err := net.Dial("tcp", venue.addr(0))
				if err != nil {
					t.Fatal(err)
				}
				err = probe(ctx, c, venue.addr(0))
				cancel()
				if tc.reason == "" && err != nil {
					t.Fatalf("probe: %v", err)
				}
				if want := "(" + tc.reason + ")"; tc.reason != "" && (err == nil || !strings.Contains(err.Error(), want)) {
					t.Fatalf("probe: %v, want an error naming %s", err, want)
				}
			}
			if tc.reason != "" {
				return
			}
			st := &venue.Stats().Handshakes
			world.Eventually(t, "the probes' handshakes at the venue", func() bool { return st.OK.Load()+st.Resumed.Load() >= handshakes })
			if st.Resumed.Load() != 0 {
				t.Errorf("venue: %d full, %d resumed handshakes; want only full ones", st.OK.Load(), st.Resumed.Load())
			}
		})
	}
}

// printJobTLS sends a job of 1000 stream bytes (seed 9) over TLS to addr,
// as a box office relay would, and returns the reply.
func printJobTLS(t *testing.T, addr string, box *certs.Client) string {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, box.Config(addr))
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(c, world.Stream(9, 1000)); err != nil {
		t.Fatalf("send job: %v", err)
	}
	c.CloseWrite()
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read status reply: %v", err)
	}
	return strings.TrimSpace(reply)
}
