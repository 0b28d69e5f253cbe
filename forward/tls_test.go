package forward

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgerelay/relay/certs"
	"github.com/edgerelay/relay/internal/world"
)

// pki is a throwaway CA writing its certificates into a test folder.
type pki struct {
	dir string
	ca  *certs.Authority
}

func newPKI(t testing.TB, name string) *pki {
	t.Helper()
	ca, der, err := certs.NewAuthority(certs.Request{Name: name, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{dir: t.TempDir(), ca: ca}
	if err := certs.WriteFiles(p.path("ca.crt"), p.path("ca.key"), der, ca.Key, false); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pki) path(name string) string { return filepath.Join(p.dir, name) }

// issue writes name.crt and name.key, valid from notBefore (zero: now) for
// the given time, and returns their paths.
func (p *pki) issue(t testing.TB, kind certs.Kind, name string, notBefore time.Time, valid time.Duration) (string, string) {
	t.Helper()
	start := notBefore
	if start.IsZero() {
		start = time.Now()
	}
	der, key, err := p.ca.Issue(kind, certs.Request{Name: name, Hosts: []string{"127.0.0.1"},
		NotBefore: notBefore, NotAfter: start.Add(valid)})
	if err != nil {
		t.Fatal(err)
	}
	crt, k := p.path(name+".crt"), p.path(name+".key")
	if err := certs.WriteFiles(crt, k, der, key, true); err != nil {
		t.Fatal(err)
	}
	return crt, k
}

// serverTLS is the terminating side: a certificate for 127.0.0.1 and,
// unless clientCA is empty, required client certificates.
func (p *pki) serverTLS(t testing.TB, clientCA string) *certs.Server {
	t.Helper()
	crt, key := p.issue(t, certs.KindServer, "venue", time.Time{}, time.Hour)
	st, err := certs.LoadServer(certs.ServerFiles{Cert: crt, Key: key, ClientCA: clientCA})
	if err != nil {
		t.Fatal(err)
	}
	return certs.NewServer(st)
}

// clientTLS is the originating side, trusting p and presenting a client
// certificate called name from issuer (none when issuer is nil).
func (p *pki) clientTLS(t testing.TB, issuer *pki, name string) *certs.Client {
	t.Helper()
	f := certs.ClientFiles{CA: p.path("ca.crt")}
	if issuer != nil {
		f.Cert, f.Key = issuer.issue(t, certs.KindClient, name, time.Time{}, time.Hour)
	}
	st, err := certs.LoadClient(f)
	if err != nil {
		t.Fatal(err)
	}
	return certs.NewClient(st)
}

// hashPrinter is a printer simulator: it reads a job to EOF and answers with
// its length and SHA-256, then closes.
func hashPrinter(c net.Conn) {
	h := sha256.New()
	n, _ := io.Copy(h, c)
	fmt.Fprintf(c, "OK %d %s\n", n, hex.EncodeToString(h.Sum(nil)))
}

// printJob sends a job of n stream bytes through addr and returns the reply.
func printJob(t *testing.T, addr string, seed uint64, n int64) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(c, world.Stream(seed, n)); err != nil {
		t.Fatalf("send job: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read status reply: %v", err)
	}
	return strings.TrimSpace(reply)
}

func wantReply(seed uint64, n int64) string {
	sum := world.StreamSum(seed, n)
	return fmt.Sprintf("OK %d %s", sum.N, hex.EncodeToString(sum.SHA[:]))
}

// TestTLSTunnel runs the box-office chain in one process: client -> relay
// originating mutual TLS -> raw exclusive relay terminating it -> printer.
// Jobs arrive intact, the second connection resumes on both sides, and the
// access lines say so.
func TestTLSTunnel(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t, "venue-ca")
	backend := world.NewBackend(t, hashPrinter)
	venue := startRelay(t, Config{
		Upstreams: [][]string{{backend.Addr()}},
		TLS:       p.serverTLS(t, p.path("ca.crt")).Config(),
		Raw:       &Raw{Exclusive: true},
	})
	box := startRelay(t, Config{
		Upstreams:   [][]string{{venue.addr(0)}},
		UpstreamTLS: p.clientTLS(t, p, "boxoffice-1").Config,
	})
	for i, n := range []int64{1 << 20, 777, 0} {
		if got, want := printJob(t, box.addr(0), uint64(i), n), wantReply(uint64(i), n); got != want {
			t.Fatalf("job %d: reply %q, want %q", i, got, want)
		}
	}
	venue.logs.WaitCount(t, 3, `"message":"raw job done"`)
	if got := venue.Stats().Handshakes.OK.Load(); got != 1 {
		t.Errorf("venue full handshakes = %d, want 1", got)
	}
	if got := venue.Stats().Handshakes.Resumed.Load(); got != 2 {
		t.Errorf("venue resumed handshakes = %d, want 2", got)
	}
	if got := box.Stats().UpstreamHandshakes.Resumed.Load(); got != 2 {
		t.Errorf("box office resumed handshakes = %d, want 2", got)
	}
	logs := venue.logs.String()
	for _, want := range []string{`"resumed":false,"peer_cn":"boxoffice-1"`, `"resumed":true,"peer_cn":"boxoffice-1"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("venue log lacks %s:\n%s", want, logs)
		}
	}
	box.logs.WaitCount(t, 2, `"resumed":true`)
}

// TestTLSBadClientsNeverReachUpstream: no certificate, one from another CA
// and an expired one each end at the handshake, with one warning line
// naming the reason, and the upstream is never dialled.
func TestTLSBadClientsNeverReachUpstream(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t, "venue-ca")
	other := newPKI(t, "other-ca")
	backend := world.NewBackend(t, hashPrinter)
	venue := startRelay(t, Config{
		Upstreams: [][]string{{backend.Addr()}},
		TLS:       p.serverTLS(t, p.path("ca.crt")).Config(),
	})
	otherCrt, otherKey := other.issue(t, certs.KindClient, "intruder", time.Time{}, time.Hour)
	expiredCrt, expiredKey := p.issue(t, certs.KindClient, "lost-laptop", time.Now().Add(-48*time.Hour), 24*time.Hour)
	cases := []struct {
		name   string
		certs  []tls.Certificate
		reason string
	}{
		{"no certificate", nil, TLSNoCertificate},
		{"other CA", []tls.Certificate{loadPair(t, otherCrt, otherKey)}, TLSUnknownCA},
		{"expired", []tls.Certificate{loadPair(t, expiredCrt, expiredKey)}, TLSExpired},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", venue.addr(0), &tls.Config{
				RootCAs: p.clientPool(t), ServerName: "127.0.0.1",
				// Present the certificate even when its CA is not one the
				// server asked for (crypto/tls would send none).
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					if len(tc.certs) == 0 {
						return &tls.Certificate{}, nil
					}
					return &tc.certs[0], nil
				},
			})
			if err == nil {
				// TLS 1.3: the client's side of the handshake is done before
				// the server has judged its certificate; the alert comes next.
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err = c.Read(make([]byte, 1))
				c.Close()
			}
			if err == nil || handshakeReason(err) != tc.reason {
				t.Fatalf("client saw %v (reason %q), want a %s alert", err, handshakeReason(err), tc.reason)
			}
			venue.logs.Wait(t, `"reason":"`+tc.reason+`"`)
			if n := venue.logs.Count(`"reason":"` + tc.reason + `"`); n != 1 {
				t.Errorf("%d warning lines with reason %s, want 1:\n%s", n, tc.reason, venue.logs)
			}
			if got := venue.Stats().Accepted.Load(); got != 0 {
				t.Errorf("after %d bad clients Accepted = %d, want 0", i+1, got)
			}
		})
	}
	if backend.Accepted() != 0 {
		t.Fatalf("the upstream saw %d connections, want none", backend.Accepted())
	}
	// The refusal is logged before the slot is given back: wait for it.
	world.Eventually(t, "Active back to 0 after the bad clients", func() bool {
		return venue.Stats().Active.Load() == 0
	})
}

func loadPair(t *testing.T, crt, key string) tls.Certificate {
	t.Helper()
	pair, err := certs.LoadPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	return *pair
}

func (p *pki) clientPool(t *testing.T) *x509.CertPool {
	t.Helper()
	pool, err := certs.LoadPool(p.path("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// TestTLSPlaintextClientGetsFIN: a client speaking plaintext to a TLS
// listener is closed cleanly (EOF, not a reset), even after sending bytes.
func TestTLSPlaintextClientGetsFIN(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t, "venue-ca")
	backend := world.NewBackend(t, hashPrinter)
	venue := startRelay(t, Config{
		Upstreams: [][]string{{backend.Addr()}},
		TLS:       p.serverTLS(t, "").Config(),
	})
	c := venue.dial(t, 0)
	if _, err := io.WriteString(c, "PRINT job-1 in plaintext\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if err != nil || errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("plaintext client: read %d bytes then %v, want a clean EOF", n, err)
	}
	venue.logs.Wait(t, `"reason":"not_tls"`)
	if backend.Accepted() != 0 {
		t.Fatalf("the upstream saw %d connections, want none", backend.Accepted())
	}
}

// TestTLSHandshakeCutByCloseIsNoFailure: a handshake that Close cuts
// short is not a failed handshake: the metric counts clients and
// upstreams that failed one, not the relay stopping.
func TestTLSHandshakeCutByCloseIsNoFailure(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t, "venue-ca")
	backend := world.NewBackend(t, hashPrinter)
	venue := startRelay(t, Config{
		Upstreams: [][]string{{backend.Addr()}},
		TLS:       p.serverTLS(t, "").Config(),
	})
	c := venue.dial(t, 0) // says nothing: the relay waits for its ClientHello
	world.Eventually(t, "the client admitted", func() bool { return venue.Stats().Active.Load() == 1 })
	venue.Close()
	expectClosed(t, c, 5*time.Second)
	if failed := venue.Stats().Handshakes.Failed(); len(failed) != 0 {
		t.Errorf("handshakes failed %v, want none: Close cut the only one", failed)
	}
}

// TestTLSUpstreamUnknownCA: an upstream whose certificate does not chain
// to upstream_tls.ca is a failed dial, counted by reason; the client is
// closed and nothing is sent in plaintext.
func TestTLSUpstreamUnknownCA(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t, "venue-ca")
	impostor := newPKI(t, "impostor-ca")
	backend := world.NewBackend(t, hashPrinter)
	venue := startRelay(t, Config{
		Upstreams: [][]string{{backend.Addr()}},
		TLS:       impostor.serverTLS(t, "").Config(),
	})
	box := startRelay(t, Config{
		Upstreams:   [][]string{{venue.addr(0)}},
		UpstreamTLS: p.clientTLS(t, nil, "").Config,
	})
	c := box.dial(t, 0)
	expectClosed(t, c, 5*time.Second)
	if got := box.Stats().UpstreamHandshakes.Failed()[TLSUnknownCA]; got != 1 {
		t.Errorf("upstream handshakes failed for unknown_authority = %d, want 1", got)
	}
	// The status page's TLS attention reads the failure, its upstream and
	// no success since.
	if lastOK, failing := box.Stats().UpstreamHandshakes.Recent(); !lastOK.IsZero() || len(failing) != 1 ||
		failing[0].Reason != TLSUnknownCA || failing[0].Peer != venue.addr(0) {
		t.Errorf("recent upstream handshakes: last ok %v, failing %+v, want unknown_authority with %s alone", lastOK, failing, venue.addr(0))
	}
	box.logs.Wait(t, "upstream unreachable", `unknown_authority`)
	if backend.Accepted() != 0 {
		t.Fatalf("the upstream behind saw %d connections, want none", backend.Accepted())
	}
}

// TestTLSACLByCertificateName: hostssl lines decide on the certificate's
// name within the handshake; a rejected name never reaches the upstream,
// an allowed one's access line names the deciding line.
func TestTLSACLByCertificateName(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t, "venue-ca")
	venue, backend, a := aclVenue(t, p, "hostssl test all reject cn=lost-laptop\nhostssl test all allow cn=boxoffice-*\nhost all all reject\n")
	lost := startRelay(t, Config{Upstreams: [][]string{{venue.addr(0)}}, UpstreamTLS: p.clientTLS(t, p, "lost-laptop").Config})
	box := startRelay(t, Config{Upstreams: [][]string{{venue.addr(0)}}, UpstreamTLS: p.clientTLS(t, p, "boxoffice-2").Config})

	c := lost.dial(t, 0)
	expectClosed(t, c, 5*time.Second)
	a.log.Wait(t, "acl rejected client", `"cn":"lost-laptop"`, `"rule":"hba.conf:1"`)
	if backend.Accepted() != 0 || venue.Stats().Rejected.Load() != 1 {
		t.Fatalf("rejected name: upstream saw %d connections, Rejected = %d", backend.Accepted(), venue.Stats().Rejected.Load())
	}
	if got, want := printJob(t, box.addr(0), 7, 4096), wantReply(7, 4096); got != want {
		t.Fatalf("allowed name: reply %q, want %q", got, want)
	}
	venue.logs.Wait(t, `"peer_cn":"boxoffice-2"`, `"acl":"hba.conf:2"`)
}

// TestTLSKeepsRawTimeouts: across the tunnel, the box office's socket to
// the venue gets the raw device options (TCP_USER_TIMEOUT, keepalive,
// NODELAY) on the TCP socket under TLS, and the venue's idle timeout still
// ends a silent connection.
func TestTLSKeepsRawTimeouts(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t, "venue-ca")
	backend := world.NewBackend(t, world.Echo)
	venue := startRelay(t, Config{
		Upstreams:   [][]string{{backend.Addr()}},
		TLS:         p.serverTLS(t, p.path("ca.crt")).Config(),
		Raw:         &Raw{},
		IdleTimeout: 300 * time.Millisecond,
	})
	dialed := make(chan net.Conn, 1)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			dialed <- c
		}
		return c, err
	}
	box := startRelay(t, Config{
		Upstreams:   [][]string{{venue.addr(0)}},
		UpstreamTLS: p.clientTLS(t, p, "boxoffice-1").Config,
		Dial:        dial,
		Raw:         &Raw{UserTimeout: 1500 * time.Millisecond},
	})
	c := box.dial(t, 0)
	if got := roundTrip(t, c, "\x05"); got != "\x05" {
		t.Fatalf("echo %q", got)
	}
	wantSockopts(t, <-dialed, " under TLS",
		sockopt{"TCP_USER_TIMEOUT", unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 1500},
		sockopt{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		sockopt{"TCP_NODELAY", unix.IPPROTO_TCP, unix.TCP_NODELAY, 1})
	expectClosed(t, c, 5*time.Second)
	venue.logs.Wait(t, "raw job done", `"end":"idle"`, `"peer_cn":"boxoffice-1"`)
}
