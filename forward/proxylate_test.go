package forward

import (
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// TestProxyHeaderAfterConnect: a source that is not a trusted front and
// sends a PROXY header only after the relay has accepted it and dialled the
// upstream (too late for the accept-time peek) is closed at its first read:
// the upstream gets none of its bytes, one access line says why, and the
// rejection is counted. A plain client is served as before.
func TestProxyHeaderAfterConnect(t *testing.T) {
	tests := []struct{ name, send string }{
		{"v1", "PROXY TCP4 10.0.0.1 127.0.0.1 1 2\r\nhello"},
		{"v2", string(v2Header(netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2"))) + "hello"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			var got atomic.Int64            // bytes the upstream received
			ended := make(chan struct{}, 2) // a connection's handler returned
			backend := world.NewBackend(t, func(c net.Conn) {
				defer func() { ended <- struct{}{} }()
				buf := make([]byte, 512)
				for {
					n, err := c.Read(buf)
					got.Add(int64(n))
					if err != nil {
						return
					}
					c.Write(buf[:n])
				}
			})
			r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}},
				AcceptProxy: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
			c := dialFrom(t, "127.0.0.2", r.addr(0))
			world.Eventually(t, "the upstream dialled", func() bool { return backend.Accepted() == 1 })
			if _, err := io.WriteString(c, tc.send); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, c, 5*time.Second)
			line := r.logs.Wait(t, `"message":"connection closed"`, `"client":"127.0.0.2:`)
			for _, want := range []string{`"end":"proxy_header"`, `"bytes_in":0`, `not in accept_proxy_protocol`} {
				if !strings.Contains(line, want) {
					t.Errorf("access line %s\nlacks %s", line, want)
				}
			}
			select {
			case <-ended:
			case <-time.After(5 * time.Second):
				t.Fatal("the upstream connection was not closed")
			}
			if n := got.Load(); n != 0 {
				t.Errorf("the upstream received %d bytes, want 0", n)
			}
			if n := r.Stats().RejectedProxyHeader.Load(); n != 1 {
				t.Errorf("RejectedProxyHeader = %d, want 1", n)
			}
			if got := roundTrip(t, dialFrom(t, "127.0.0.2", r.addr(0)), "plain"); got != "plain" {
				t.Fatalf("plain client: echo %q", got)
			}
		})
	}
}

// The check of a client's first bytes costs no allocation per connection.
func TestFirstCheckAllocs(t *testing.T) {
	l := &Listener{cfg: Config{AcceptProxy: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}}}
	first := []byte("GET / HTTP/1.0\r\n\r\n")
	allocs := testing.AllocsPerRun(100, func() {
		d := direction{check: l.firstCheck(accepted{})}
		if err := d.checked(first); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per connection, want 0", allocs)
	}
}
