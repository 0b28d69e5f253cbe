package forward

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// TestTLSBackpressureOutlivesParkAfter: a job larger than the socket
// buffers goes through the tunnel to a printer that starts reading late, so
// the relays' writes into TLS block for longer than parkAfter. The pipe's
// wake-ups must not put a write deadline on a TLS conn: crypto/tls makes a
// write timeout permanent, and the tunnel stalled for good (the bench's
// one-stream upload timed out).
func TestTLSBackpressureOutlivesParkAfter(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t, "venue-ca")
	backend := world.NewBackend(t, func(c net.Conn) {
		time.Sleep(600 * time.Millisecond)
		hashPrinter(c)
	})
	start := func(cfg Config) *relay {
		cfg.Raw = &Raw{}
		cfg.IdleTimeout = time.Minute
		r := listenRelay(t, cfg)
		r.parkAfter = 100 * time.Millisecond
		r.serve(t)
		return r
	}
	venue := start(Config{
		Upstreams: [][]string{{backend.Addr()}},
		TLS:       p.serverTLS(t, p.path("ca.crt")).Config(),
	})
	box := start(Config{
		Upstreams:   [][]string{{venue.addr(0)}},
		UpstreamTLS: p.clientTLS(t, p, "boxoffice-1").Config,
	})
	const n = 32 << 20
	if got, want := printJob(t, box.addr(0), 9, n), wantReply(9, n); got != want {
		t.Fatalf("reply %q, want %q", got, want)
	}
}

// TestTLSStuckWriteEndsAtIdle: the client half-closes its TLS side and
// then never reads while the upstream keeps sending, so the relay's write
// into TLS blocks with no other direction left to notice. The write
// carries the idle timeout itself (a TLS conn gets no wake-up write
// deadline, see setWaitDeadline): the pair ends as idle, not never.
func TestTLSStuckWriteEndsAtIdle(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t, "venue-ca")
	backend := world.NewBackend(t, func(c net.Conn) {
		io.Copy(c, world.Stream(3, 64<<20)) // ends when the relay closes
	})
	const idle = 300 * time.Millisecond
	venue := startRelay(t, Config{
		Upstreams:   [][]string{{backend.Addr()}},
		TLS:         p.serverTLS(t, "").Config(),
		IdleTimeout: idle,
	})
	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(p.path("ca.crt"))
	if err != nil || !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("read CA: %v", err)
	}
	c := tls.Client(venue.dial(t, 0), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	defer c.Close()
	if err := c.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("close_notify: %v", err)
	}
	venue.logs.Wait(t, `"end":"idle"`)
}
