//go:build linux

package udpstream

import (
	"net/netip"
	"runtime"
	"testing"
)

// In the steady state the batched path allocates nothing per datagram, in
// either direction.
func TestSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	checkLeaks(t)
	echo := startSink(t, true)
	r := startRelayTo(t, echo.addr(), false)
	to := r.Addrs()[0].(interface{ AddrPort() netip.AddrPort }).AddrPort()
	snd := newSender(t, "127.0.0.2", to, 1200)

	run := func(n uint64) {
		base := r.Stats().DatagramsOut.Load()
		for sent := uint64(0); sent < n; sent += batchSize {
			if _, err := snd.send(batchSize, sent); err != nil {
				t.Fatal(err)
			}
			// Stay below what the path can take, so every datagram
			// makes the round trip and is counted.
			awaitCount(&r.Stats().DatagramsOut, base+sent+batchSize)
		}
	}
	run(2000) // warm up: session, pools, map
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 20000
	out0 := r.Stats().DatagramsOut.Load()
	run(n)
	runtime.ReadMemStats(&after)
	forwarded := r.Stats().DatagramsOut.Load() - out0
	mallocs := after.Mallocs - before.Mallocs
	t.Logf("%d datagrams each way, %d allocations", forwarded, mallocs)
	if forwarded < n*9/10 {
		t.Fatalf("only %d of %d datagrams made the round trip", forwarded, n)
	}
	if perDatagram := float64(mallocs) / float64(forwarded); perDatagram > 0.01 {
		t.Fatalf("%.3f allocations per datagram (%d for %d)", perDatagram, mallocs, forwarded)
	}
}
