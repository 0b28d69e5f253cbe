//go:build linux

package udpstream

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestBench measures 1200-byte datagrams (the RTB stream's size) through the
// relay and directly, sender → sink on loopback, all in this process:
// unpaced (what gets through) and paced at 500 Mbit/s (the loss). It runs
// only when asked:
//
//	UDPSTREAM_BENCH=1 go test -run TestBench -v ./udpstream/
//
// UDPSTREAM_BENCH_SECONDS sets each run's length (default 3). CPU is the
// whole test process (sender, relay and sink), in % of one core.
func TestBench(t *testing.T) {
	if os.Getenv("UDPSTREAM_BENCH") == "" {
		t.Skip("set UDPSTREAM_BENCH=1 to run the benchmark")
	}
	d := 3 * time.Second
	if s, err := strconv.Atoi(os.Getenv("UDPSTREAM_BENCH_SECONDS")); err == nil && s > 0 {
		d = time.Duration(s) * time.Second
	}
	const size = 1200
	paced := 500e6 / (size * 8) // datagrams per second at 500 Mbit/s
	for _, rate := range []float64{0, paced} {
		for _, via := range []string{"direct", "relay", "relay+gso"} {
			name := fmt.Sprintf("%s/unpaced", via)
			if rate > 0 {
				name = fmt.Sprintf("%s/paced-500Mbit", via)
			}
			t.Run(name, func(t *testing.T) {
				res := benchRun(t, via, d, size, rate)
				t.Logf("%-22s sent %8d  received %8d  %6.1f kpps  %7.1f Mbit/s  loss %6.2f %%  cpu %4.0f %%",
					name, res.sent, res.received, res.kpps(d), res.mbps(d, size), res.loss(), res.cpu)
			})
		}
	}
}

type benchResult struct {
	sent, received uint64
	cpu            float64 // process CPU, % of one core
}

func (r benchResult) kpps(d time.Duration) float64 {
	return float64(r.received) / d.Seconds() / 1000
}

func (r benchResult) mbps(d time.Duration, size int) float64 {
	return float64(r.received) * float64(size) * 8 / d.Seconds() / 1e6
}

func (r benchResult) loss() float64 {
	if r.sent == 0 {
		return 0
	}
	return 100 * (1 - float64(r.received)/float64(r.sent))
}

func benchRun(t *testing.T, via string, d time.Duration, size int, rate float64) benchResult {
	snk := startSink(t, false)
	target := snk.addr()
	if via != "direct" {
		r := startRelayTo(t, target, via == "relay+gso")
		target = r.Addrs()[0].(interface{ AddrPort() netip.AddrPort }).AddrPort()
	}
	snd := newSender(t, "127.0.0.2", target, size)
	cpu0, wall0 := processCPU(), time.Now()
	sent := snd.blast(d, rate)
	received := awaitCount(&snk.datagrams, sent)
	cpu := (processCPU() - cpu0).Seconds() / time.Since(wall0).Seconds() * 100
	return benchResult{sent: sent, received: received, cpu: cpu}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
