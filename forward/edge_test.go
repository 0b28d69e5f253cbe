package forward

import (
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// TestCloseDuringProxyHeaderWait: Close does not wait for a trusted
// front's header timeout, and a header wait that Close cuts short is no
// proxy_header rejection: neither counted nor logged as one (as a TLS
// handshake cut short is no failed handshake), and the slot is given
// back once.
func TestCloseDuringProxyHeaderWait(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}},
		AcceptProxy:        []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		ProxyHeaderTimeout: 8 * time.Second})
	c := dialFrom(t, "127.0.0.1", r.addr(0))
	if _, err := io.WriteString(c, "PROXY TCP4 "); err != nil { // the header's start: the relay waits for the rest
		t.Fatal(err)
	}
	world.Eventually(t, "the front's connection taken", func() bool { return r.Stats().Active.Load() == 1 })
	start := time.Now()
	r.Close()
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("Close took %v with a header wait pending", took)
	}
	expectClosed(t, c, 5*time.Second)
	st := r.Stats()
	if n := st.RejectedProxyHeader.Load(); n != 0 {
		t.Errorf("RejectedProxyHeader = %d, want 0 (a shutdown is no bad header)", n)
	}
	if n := r.logs.Count(`"message":"client refused"`); n != 0 {
		t.Errorf("%d refusal lines, want 0:\n%s", n, r.logs)
	}
	if n := st.Active.Load(); n != 0 {
		t.Errorf("Active = %d after Close", n)
	}
	if n := backend.Accepted(); n != 0 {
		t.Errorf("upstream dialled %d times, want 0", n)
	}
}
