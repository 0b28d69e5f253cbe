package forward

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/acl"
	"github.com/edgerelay/relay/certs"
	"github.com/edgerelay/relay/internal/world"
)

// certRefusals are venues that refuse the box office's client certificate
// after the box office's side of a TLS 1.3 handshake is done: one that
// trusts another CA for clients, one that trusts the right CA but gets a
// certificate that has expired or none, and one whose ACL rejects the
// certificate's name. Each has its venue's material and the box office's,
// and names the reason the box office hears.
func certRefusals(t *testing.T) []certRefusal {
	p, other := newPKI(t, "venue-ca"), newPKI(t, "other-ca")
	return []certRefusal{
		{name: "client CA another", reason: TLSUnknownCA, venue: p.serverTLS(t, other.path("ca.crt")), box: p.clientTLS(t, p, "boxoffice-1")},
		{name: "expired", reason: TLSExpired, venue: p.serverTLS(t, p.path("ca.crt")), box: p.expiredClient(t, "boxoffice-2025")},
		{name: "no certificate", reason: TLSNoCertificate, venue: p.serverTLS(t, p.path("ca.crt")), box: p.clientTLS(t, nil, "")},
		{name: "acl rejects cn", reason: TLSBadCertificate, venue: p.serverTLS(t, p.path("ca.crt")), box: p.clientTLS(t, p, "lost-laptop"),
			acl: "hostssl test all reject cn=lost-laptop\nhostssl test all allow cn=boxoffice-*\n"},
	}
}

type certRefusal struct {
	name   string
	reason string
	venue  *certs.Server
	box    *certs.Client
	acl    string // the venue's ACL; empty: none
}

// refusingVenue is a venue relay of a certRefusal, and where it says that
// it refused a box office.
type refusingVenue struct {
	*relay
	logs    *world.LogBuffer // the relay's, or the ACL's
	refusal []string         // what the line that says so holds
	acl     bool
}

func (tc certRefusal) startVenue(t *testing.T, upstream string) refusingVenue {
	t.Helper()
	cfg := Config{Upstreams: [][]string{{upstream}}, TLS: tc.venue.Config()}
	if tc.acl == "" {
		v := startRelay(t, cfg)
		return refusingVenue{relay: v, logs: v.logs, refusal: []string{"tls handshake failed", `"reason":"` + tc.reason + `"`}}
	}
	a := newTestACL(t, tc.acl)
	cfg.AdmitTLS = a.guard()
	return refusingVenue{relay: startRelay(t, cfg), logs: &a.log, acl: true,
		refusal: []string{"acl rejected client", `"cn":"lost-laptop"`, `"rule":"hba.conf:1"`}}
}

// refused is how many box office connections v has refused.
func (v refusingVenue) refused(reason string) uint64 {
	if v.acl {
		return v.Stats().Rejected.Load()
	}
	return v.Stats().Handshakes.Failed()[reason]
}

// testACL is an ACL (file hba.conf) for the listener "test", and the
// log of its TLS guard.
type testACL struct {
	set acl.Set
	log world.LogBuffer
}

func newTestACL(t *testing.T, text string) *testACL {
	t.Helper()
	a := &testACL{}
	a.store(t, text)
	return a
}

// aclVenue starts a venue relay terminating TLS with p's certificates, its
// ACL (rules) deciding within the handshake, in front of a hashPrinter.
func aclVenue(t *testing.T, p *pki, rules string) (*relay, *world.Backend, *testACL) {
	t.Helper()
	backend := world.NewBackend(t, hashPrinter)
	a := newTestACL(t, rules)
	venue := startRelay(t, Config{
		Upstreams: [][]string{{backend.Addr()}},
		TLS:       p.serverTLS(t, p.path("ca.crt")).Config(),
		AdmitTLS:  a.guard(),
	})
	return venue, backend, a
}

// store puts text in force, as a reload does.
func (a *testACL) store(t *testing.T, text string) {
	t.Helper()
	list, err := acl.Parse(strings.NewReader(text), "hba.conf")
	if err != nil {
		t.Fatal(err)
	}
	a.set.Store(list)
}

// guard is the listener's AdmitTLS.
func (a *testACL) guard() func(netip.AddrPort, *x509.Certificate) (bool, string) {
	return a.set.GuardTLS("test", zerolog.New(&a.log))
}

// expiredClient is the originating side with a client certificate from p
// that expired a day ago.
func (p *pki) expiredClient(t *testing.T, name string) *certs.Client {
	t.Helper()
	crt, key := p.issue(t, certs.KindClient, name, time.Now().Add(-48*time.Hour), 24*time.Hour)
	st, err := certs.LoadClient(certs.ClientFiles{CA: p.path("ca.crt"), Cert: crt, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return certs.NewClient(st)
}

// probeOnce runs one ProbeTLS of addr within 5 s and returns its error
// and how long it took.
func probeOnce(t *testing.T, box *certs.Client, addr string) (error, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = ProbeTLS(box.Config, 0)(ctx, c, addr)
	return err, time.Since(start)
}

// TestProbeTLSRefusedCertificate: a venue that refuses the box office's
// client certificate does so after the box office's side of the TLS 1.3
// handshake is done, with an alert. The probe waits for the venue's
// verdict and fails with the alert's reason; a venue that accepts sends
// its session ticket, which ends the probe's wait at once.
func TestProbeTLSRefusedCertificate(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, hashPrinter)
	for _, tc := range certRefusals(t) {
		t.Run(tc.name, func(t *testing.T) {
			venue := tc.startVenue(t, backend.Addr())
			err, _ := probeOnce(t, tc.box, venue.addr(0))
			if err == nil || !strings.Contains(err.Error(), "("+tc.reason+")") ||
				!strings.Contains(err.Error(), "the upstream rejected our client certificate") {
				t.Fatalf("probe: %v, want the upstream's refusal with reason %s", err, tc.reason)
			}
			venue.logs.Wait(t, venue.refusal...)
		})
	}
	t.Run("accepted", func(t *testing.T) {
		p := newPKI(t, "venue-ca")
		venue := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}, TLS: p.serverTLS(t, p.path("ca.crt")).Config()})
		err, took := probeOnce(t, p.clientTLS(t, p, "boxoffice-1"), venue.addr(0))
		if err != nil {
			t.Fatalf("probe of a venue that accepts: %v", err)
		}
		// The venue's ticket is its acceptance: no waiting out the bound.
		if took >= verdictWait {
			t.Errorf("probe took %v, want less than the verdict's bound %v: the ticket did not end the wait", took, verdictWait)
		}
	})
	// A server that sends no ticket says nothing when it accepts: the
	// probe waits out the bound, then passes; its alert still fails it.
	t.Run("no tickets", func(t *testing.T) {
		p, other := newPKI(t, "venue-ca"), newPKI(t, "other-ca")
		crt, key := p.issue(t, certs.KindServer, "venue", time.Time{}, time.Hour)
		for _, tc := range []struct {
			clientCA *pki
			reason   string
		}{{p, ""}, {other, TLSUnknownCA}} {
			venue := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}, TLS: &tls.Config{
				Certificates: []tls.Certificate{loadPair(t, crt, key)}, SessionTicketsDisabled: true,
				ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: tc.clientCA.clientPool(t)}})
			err, took := probeOnce(t, p.clientTLS(t, p, "boxoffice-1"), venue.addr(0))
			switch {
			case tc.reason == "" && (err != nil || took < verdictWait || took > 2*verdictWait):
				t.Errorf("probe of a venue that accepts without a ticket: %v after %v, want success after the bound %v", err, took, verdictWait)
			case tc.reason != "" && (err == nil || !strings.Contains(err.Error(), "("+tc.reason+")")):
				t.Errorf("probe of a venue that refuses without tickets: %v, want reason %s", err, tc.reason)
			}
		}
	})
}

// TestTLSUpstreamRefusesOurCertificate: on the data path a venue that
// refuses the box office's certificate (after the box office's side of
// the handshake, so the client's job is already on its way, encrypted)
// costs the box office one warning line that says so, with the bytes the
// client sent and lost; the refusal counts as a failed upstream handshake
// with the reason, marks the venue down, and the re-tries (the probe) keep
// it down. Nothing reaches the printer.
func TestTLSUpstreamRefusesOurCertificate(t *testing.T) {
	checkLeaks(t)
	for _, tc := range certRefusals(t) {
		for _, mode := range []struct {
			name, line string
			raw        *Raw
		}{{"tcp", "connection closed", nil}, {"raw", "raw job done", &Raw{Exclusive: true}}} {
			t.Run(tc.name+"/"+mode.name, func(t *testing.T) {
				testUpstreamRefuses(t, tc, mode.raw, mode.line)
			})
		}
	}
}

// testUpstreamRefuses is one case of TestTLSUpstreamRefusesOurCertificate:
// a box office in raw mode (or plain tcp when raw is nil), whose access
// line is line.
func testUpstreamRefuses(t *testing.T, tc certRefusal, raw *Raw, line string) {
	backend := world.NewBackend(t, hashPrinter)
	venue := tc.startVenue(t, backend.Addr())
	box := startRelay(t, Config{Upstreams: [][]string{{venue.addr(0)}}, UpstreamTLS: tc.box.Config, Raw: raw})
	const job = 5000
	c := box.dial(t, 0)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(c, world.Stream(1, job)); err != nil {
		t.Fatalf("send job: %v", err)
	}
	c.CloseWrite()
	if n, _ := io.Copy(io.Discard, c); n != 0 {
		t.Fatalf("the client got %d bytes from a venue that refused the box office", n)
	}
	c.Close()
	// The line counts what went into the tunnel before the refusal came
	// (the rest of the job was still in the client's socket).
	warn := box.logs.Wait(t, `"level":"warn"`, "the upstream rejected our client certificate: "+tc.reason)
	var fields struct {
		BytesIn  *int64 `json:"bytes_in"`
		BytesOut int64  `json:"bytes_out"`
		Upstream string `json:"upstream"`
		Reason   string `json:"reason"`
	}
	if err := json.Unmarshal([]byte(warn), &fields); err != nil {
		t.Fatal(err)
	}
	if fields.BytesIn == nil || *fields.BytesIn > job || fields.BytesOut != 0 ||
		fields.Upstream != venue.addr(0) || fields.Reason != tc.reason {
		t.Errorf("warning line: %s", warn)
	}
	if n := box.logs.Count(line); n != 0 {
		t.Errorf("%d more access lines for the refused client, want the warning alone:\n%s", n, box.logs)
	}
	if got := box.Stats().UpstreamHandshakes.Failed(); got[tc.reason] != 1 || len(got) != 1 {
		t.Errorf("box upstream handshakes failed = %v, want %s once", got, tc.reason)
	}
	down := box.logs.Wait(t, `"message":"upstream down"`)
	if !strings.Contains(down, "("+tc.reason+")") {
		t.Errorf("the down line does not name the reason %s: %s", tc.reason, down)
	}
	// The client's handshake and the first re-try (after 1 s) each
	// met the venue's refusal; the probe of old brought it back up.
	world.Eventually(t, "a re-try of the venue", func() bool {
		return venue.refused(tc.reason) >= 2 || box.logs.Count(`"message":"upstream up"`) > 0
	})
	if n := box.logs.Count(`"message":"upstream up"`); n != 0 {
		t.Fatalf("a re-try brought the venue that refuses the box office back up:\n%s", box.logs)
	}
	expectClosed(t, box.dial(t, 0), time.Second)
	if got := box.Stats().UpstreamHandshakes.Failed()[tc.reason]; got != 1 {
		t.Errorf("box upstream handshakes failed for %s = %d after a second client, want 1: it was sent to the venue", tc.reason, got)
	}
	if backend.Accepted() != 0 {
		t.Fatalf("the printer saw %d connections, want none", backend.Accepted())
	}
}

// TestTLSACLRejectsResumedSession: the lost laptop's box office holds a
// session ticket from before its name was rejected. Its next connection
// resumes, and the ACL, asked within the resumed handshake too, refuses
// it with an alert: the box office's line says its certificate was
// rejected, the venue's ACL logs the name, and nothing reaches the
// printer. Before, the jobs print, the second on a resumed handshake with
// the deciding line in the venue's access line.
func TestTLSACLRejectsResumedSession(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t, "venue-ca")
	venue, backend, a := aclVenue(t, p, "hostssl test all allow cn=boxoffice-*\n")
	box := startRelay(t, Config{Upstreams: [][]string{{venue.addr(0)}}, UpstreamTLS: p.clientTLS(t, p, "boxoffice-3").Config})
	for i := range 2 {
		if got, want := printJob(t, box.addr(0), uint64(i), 2000), wantReply(uint64(i), 2000); got != want {
			t.Fatalf("job %d: reply %q, want %q", i, got, want)
		}
	}
	if st := &venue.Stats().Handshakes; st.OK.Load() != 1 || st.Resumed.Load() != 1 {
		t.Fatalf("venue handshakes: %d full, %d resumed; want 1 and 1", st.OK.Load(), st.Resumed.Load())
	}
	venue.logs.WaitCount(t, 2, `"peer_cn":"boxoffice-3"`, `"acl":"hba.conf:1"`)

	a.store(t, "hostssl test all reject cn=boxoffice-3\nhostssl test all allow cn=boxoffice-*\n")
	c := box.dial(t, 0)
	io.WriteString(c, "job 3")
	expectClosed(t, c, 5*time.Second)
	box.logs.Wait(t, `"level":"warn"`, "the upstream rejected our client certificate: bad_certificate")
	a.log.Wait(t, "acl rejected client", `"cn":"boxoffice-3"`, `"rule":"hba.conf:1"`)
	if st := &box.Stats().UpstreamHandshakes; st.Resumed.Load() != 2 {
		t.Errorf("box upstream handshakes resumed = %d, want 2: the refused one did not resume", st.Resumed.Load())
	}
	if got := venue.Stats().Rejected.Load(); got != 1 {
		t.Errorf("venue Rejected = %d, want 1", got)
	}
	if st := &venue.Stats().Handshakes; st.OK.Load() != 1 || st.Resumed.Load() != 1 || len(st.Failed()) != 0 {
		t.Errorf("venue handshakes: %d full, %d resumed, failed %v; want the two jobs' alone (a rejection counts in Rejected)",
			st.OK.Load(), st.Resumed.Load(), st.Failed())
	}
	if got := backend.Accepted(); got != 2 {
		t.Errorf("the printer saw %d connections, want the 2 jobs'", got)
	}
}

// TestTLSACLAfterHandshakeWithPlainConfig: a Config.TLS that is no
// certs.Server cannot take the ACL into its handshake; the ACL is asked
// once the handshake is done, as before, and a rejected client is closed
// and counted in Rejected, not in the handshakes.
func TestTLSACLAfterHandshakeWithPlainConfig(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t, "venue-ca")
	backend := world.NewBackend(t, hashPrinter)
	a := newTestACL(t, "hostssl test all reject cn=lost-laptop\n")
	crt, key := p.issue(t, certs.KindServer, "venue", time.Time{}, time.Hour)
	venue := startRelay(t, Config{
		Upstreams: [][]string{{backend.Addr()}},
		TLS: &tls.Config{Certificates: []tls.Certificate{loadPair(t, crt, key)},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.clientPool(t)},
		AdmitTLS: a.guard(),
	})
	box := startRelay(t, Config{Upstreams: [][]string{{venue.addr(0)}}, UpstreamTLS: p.clientTLS(t, p, "lost-laptop").Config})
	expectClosed(t, box.dial(t, 0), 5*time.Second)
	a.log.Wait(t, "acl rejected client", `"cn":"lost-laptop"`)
	if got := venue.Stats().Rejected.Load(); got != 1 {
		t.Errorf("venue Rejected = %d, want 1", got)
	}
	if st := &venue.Stats().Handshakes; st.OK.Load()+st.Resumed.Load() != 0 || len(st.Failed()) != 0 {
		t.Errorf("venue handshakes: %d full, %d resumed, failed %v; want none counted", st.OK.Load(), st.Resumed.Load(), st.Failed())
	}
	if backend.Accepted() != 0 {
		t.Errorf("the printer saw %d connections, want none", backend.Accepted())
	}
}
