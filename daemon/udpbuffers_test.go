package daemon

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
	"github.com/edgerelay/relay/udpstream"
	"github.com/pion/transport/v3/test"
)

// udpRelays returns the daemon's udp listeners by name, the draining ones
// as "name (draining)".
func udpRelays(d *Daemon) map[string]*udpstream.Relay {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]*udpstream.Relay{}
	for name, in := range d.running {
		if r, ok := in.srv.(*udpstream.Relay); ok {
			out[name] = r
		}
	}
	for in := range d.draining {
		if r, ok := in.srv.(*udpstream.Relay); ok {
			out[in.spec.Name+" (draining)"] = r
		}
	}
	return out
}

// TestEveryUDPListenerSharesTheBuffers: every udp listener draws its
// receive buffers from the daemon's one udpstream.Buffers, so that the
// process holds at most its cap (16 MiB) however many listeners a config
// has: the ones built at start, one a reload replaces (new upstream) and
// one a reload adds. A listener with buffers of its own would have a cap
// of its own.
func TestEveryUDPListenerSharesTheBuffers(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	e1, e2 := newUDPEcho(t, "e1"), newUDPEcho(t, "e2")
	pa, pb, pc := freePort(t, "udp"), freePort(t, "udp"), freePort(t, "udp")
	render := func(bUp string, withC bool) string {
		y := fmt.Sprintf("listeners:\n"+
			"  - {name: a, mode: udp, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n"+
			"  - {name: b, mode: udp, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n", pa, e1.addr(), pb, bUp)
		if withC {
			y += fmt.Sprintf("  - {name: c, mode: udp, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n", pc, e1.addr())
		}
		return y
	}
	w := startWorld(t, render(e1.addr(), false), nil)
	shared := func(when string, want ...string) map[string]*udpstream.Relay {
		t.Helper()
		relays := udpRelays(w.d)
		for _, name := range want {
			if relays[name] == nil {
				t.Fatalf("%s: no udp listener %s among %v", when, name, relays)
			}
		}
		for name, r := range relays {
			if r.Buffers() == nil || r.Buffers() != w.d.udpBufs {
				t.Errorf("%s: udp listener %s has receive buffers %p, not the daemon's %p", when, name, r.Buffers(), w.d.udpBufs)
			}
		}
		return relays
	}
	before := shared("at start", "a", "b")

	w.writeFile("relay.yaml", render(e2.addr(), true))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	after := shared("after the reload", "a", "b", "c")
	if after["b"] == before["b"] {
		t.Fatal("the reload kept listener b; the test needs it replaced")
	}
	u := udpClient(t, "127.0.0.1")
	for name, port := range map[string]int{"a": pa, "b": pb, "c": pc} {
		want := map[string]string{"a": "e1:x", "b": "e2:x", "c": "e1:x"}[name]
		if got, err := udpRoundTrip(u, fmt.Sprintf("127.0.0.1:%d", port), "x", 2*time.Second); got != want || err != nil {
			t.Fatalf("listener %s after the reload: %q %v, want %q", name, got, err, want)
		}
	}
	_ = w.d.Close()
}

// bufferBytes reads the relay_udp_receive_buffer_* gauges from a scrape.
func bufferBytes(t *testing.T, body string) (inUse, free, limit float64) {
	t.Helper()
	read := func(series string) float64 {
		for line := range strings.Lines(body) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("%s: %v", series, err)
				}
				return f
			}
		}
		t.Fatalf("no %s on /metrics:\n%s", series, grepRelay(body))
		return 0
	}
	return read(`relay_udp_receive_buffer_bytes{state="in_use"}`), read(`relay_udp_receive_buffer_bytes{state="free"}`),
		read("relay_udp_receive_buffer_limit_bytes")
}

// TestUDPBuffersOnMetrics: /metrics shows what the udp listeners' receive
// buffers hold: nothing once idle, at least one 2 MiB batch
// (in use or free) while datagrams flow, never more than the limit (16 MiB),
// and nothing again once the flow has stopped for two trims (1 to 2 s).
func TestUDPBuffersOnMetrics(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	rtb := newUDPEcho(t, "rtb")
	port := freePort(t, "udp")
	w := startWorld(t, adminOn(t)+fmt.Sprintf("listeners:\n"+
		"  - {name: rtb, mode: udp, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n", port, rtb.addr()), nil)
	metricsURL := "http://" + w.d.AdminAddr() + "/metrics"
	const batch, limit = 2 << 20, 16 << 20
	if inUse, free, lim := bufferBytes(t, body(t, metricsURL)); inUse+free > batch || lim != limit {
		t.Fatalf("before any datagram: in_use %v, free %v, limit %v; want at most %d held, limit %d", inUse, free, lim, batch, limit)
	}
	// A port's first read tries recvmmsg before it waits, with a batch it
	// hands back on EAGAIN: kept free until two trims have passed.
	metricsSay(t, w, `relay_udp_receive_buffer_bytes{state="in_use"} 0`, `relay_udp_receive_buffer_bytes{state="free"} 0`)

	at := fmt.Sprintf("127.0.0.1:%d", port)
	u := udpClient(t, "127.0.0.1")
	if got, err := udpRoundTrip(u, at, "hello", 2*time.Second); got != "rtb:hello" || err != nil {
		t.Fatalf("rtb: %q %v", got, err)
	}
	// A datagram a millisecond (at most 10 000) while the scrapes look.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		to, _ := net.ResolveUDPAddr("udp", at)
		for range 10_000 {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			_, _ = u.WriteToUDP([]byte("ping"), to)
		}
	}()
	held := 0.0
	for deadline := time.Now().Add(world.WaitLimit); held < batch && time.Now().Before(deadline); {
		inUse, free, lim := bufferBytes(t, body(t, metricsURL))
		if inUse+free > lim || lim != limit {
			t.Fatalf("while datagrams flow: in_use %v + free %v, limit %v", inUse, free, lim)
		}
		if held = inUse + free; held < batch {
			time.Sleep(10 * time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	if held < batch {
		t.Fatalf("while datagrams flow the buffers held %v bytes, want at least a batch (%d)", held, batch)
	}
	metricsSay(t, w, `relay_udp_receive_buffer_bytes{state="in_use"} 0`, `relay_udp_receive_buffer_bytes{state="free"} 0`)
	_ = w.d.Close()
}

// body is a scrape's body; a status other than 200 fails the test.
func body(t *testing.T, url string) string {
	t.Helper()
	code, b := scrape(t, url)
	if code != 200 {
		t.Fatalf("GET %s: %d\n%s", url, code, b)
	}
	return b
}
