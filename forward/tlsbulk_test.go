package forward

import (
	"net"
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
