//go:build linux

package udpstream

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"

	testworld "github.com/edgerelay/relay/internal/world"
)

// rtbPorts is the CAYIN example's RTB range, 8100-8226.
const rtbPorts = 127

// idleHeapLimit bounds the Go heap in use of a relay over rtbPorts idle
// listen ports that each forwarded one datagram, with its session still
// open. When the batch pool was a sync.Pool, the batches of the ports'
// readers (2 MiB each) outlived the first collection after the traffic
// stopped: 17-263 MiB in six runs. What remains without them is the sessions, the
// tables and the test's own sockets, a few MiB.
const idleHeapLimit = 12 << 20

// TestIdleListenPortsHoldNoBatch: a range of listen ports that has seen one
// datagram each and gone quiet returns to a small heap at the first
// collection: no reader holds a batch while it waits, and the pool has
// freed the batches nobody took since.
func TestIdleListenPortsHoldNoBatch(t *testing.T) {
	checkLeaks(t)
	echo := startSink(t, true)
	first := testworld.ReserveUDPPortRun(t, rtbPorts)
	cfg := Config{Name: "rtb", Log: zerolog.Nop()}
	for i := range rtbPorts {
		cfg.Listen = append(cfg.Listen, fmt.Sprintf("127.0.0.1:%d", first+i))
		cfg.Upstreams = append(cfg.Upstreams, []string{echo.addr().String()})
	}
	r := serveOn(t, cfg, defaultNetwork(&cfg))

	c := newClient(t, "127.0.0.2")
	for _, a := range r.Addrs() {
		c.send(a, []byte("status?"))
	}
	for i := range rtbPorts {
		if _, _, ok := c.recv(5 * time.Second); !ok {
			t.Fatalf("%d of %d replies came back", i, rtbPorts)
		}
	}
	if got := r.Stats().SessionsActive.Load(); got != rtbPorts {
		t.Fatalf("%d sessions open, want %d", got, rtbPorts)
	}

	// Logged, not asserted: it depends on where the collector caught the
	// readers. With a sync.Pool each reader allocated a batch of its own
	// (155-257 MiB here); with the free list it was 10-13 MiB in most
	// runs, up to 90 MiB when collections parked readers holding batches,
	// until the pool got its cap (TestBurstHeap asserts the bound).
	var burst runtime.MemStats
	runtime.ReadMemStats(&burst)
	t.Logf("heap in use just after the datagrams: %.1f MiB", float64(burst.HeapInuse)/(1<<20))

	// Idle: two trims of the batch pool, by the relay's own clock, and
	// then one collection, the first an idle relay runs (Go forces one
	// every two minutes).
	idleFrom := r.clock.Load()
	testworld.Eventually(t, "the relay's clock to pass two pool trims", func() bool {
		return r.clock.Load()-idleFrom > int64(2*batchTrimPeriod+r.tick)
	})
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap := ms.HeapInuse
	t.Logf("%d idle listen ports, one session each: heap in use %.1f MiB after one collection",
		rtbPorts, float64(heap)/(1<<20))
	if heap >= idleHeapLimit {
		t.Fatalf("heap in use %.1f MiB with %d idle ports, want < %d MiB (batches kept while idle?)",
			float64(heap)/(1<<20), rtbPorts, idleHeapLimit>>20)
	}
	// The ports still forward after their idle time.
	for _, a := range r.Addrs()[:3] {
		c.send(a, []byte("again"))
		if _, _, ok := c.recv(5 * time.Second); !ok {
			t.Fatalf("no reply through %s after idling", a)
		}
	}
}
