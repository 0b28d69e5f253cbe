//go:build linux

package udpstream

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestBench measures 1200-byte datagrams (the RTB stream's size) through the
// relay and directly, sender → sink on loopback, all in this process:
// unpaced (what gets through) and paced at 500 Mbit/s (the loss). "relay" is
// the default build (GSO on), "relay-nogso" the same without GSO,
// "relay-reverse" the default build carrying the stream from the upstream
// back to the client (the session's reply path). Modes are
// interleaved round by round and the medians printed. It runs only when
// asked:
//
//	UDPSTREAM_BENCH=1 go test -run TestBench -v ./udpstream/
//
// UDPSTREAM_BENCH_SECONDS sets each run's length (default 3),
// UDPSTREAM_BENCH_ROUNDS the rounds (default 3). CPU is the whole test
// process (sender, relay and sink), in % of one core.
func TestBench(t *testing.T) {
	if os.Getenv("UDPSTREAM_BENCH") == "" {
		t.Skip("set UDPSTREAM_BENCH=1 to run the benchmark")
	}
	d := time.Duration(envInt("UDPSTREAM_BENCH_SECONDS", 3)) * time.Second
	rounds := envInt("UDPSTREAM_BENCH_ROUNDS", 3)
	const size = 1200
	paced := 500e6 / (size * 8) // datagrams per second at 500 Mbit/s
	type mode struct {
		name string
		via  string
		rate float64
	}
	var modes []mode
	for _, rate := range []float64{0, paced} {
		for _, via := range []string{"direct", "relay", "relay-nogso", "relay-reverse"} {
			name := via + "/unpaced"
			if rate > 0 {
				name = via + "/paced-500Mbit"
			}
			modes = append(modes, mode{name, via, rate})
		}
	}
	results := map[string][]benchResult{}
	for round := range rounds {
		for _, m := range modes {
			t.Run(fmt.Sprintf("%s/%d", m.name, round), func(t *testing.T) {
				res := benchRun(t, m.via, d, size, m.rate)
				results[m.name] = append(results[m.name], res)
				t.Logf("%-26s %s", m.name, res.format(d, size))
			})
		}
	}
	t.Logf("medians of %d rounds of %s:", rounds, d)
	for _, m := range modes {
		if rs := results[m.name]; len(rs) > 0 { // -run may have left a mode out
			t.Logf("%-26s %s", m.name, median(rs).format(d, size))
		}
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// median takes each figure's median on its own.
func median(rs []benchResult) benchResult {
	pick := func(f func(benchResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return benchResult{
		sent:     uint64(pick(func(r benchResult) float64 { return float64(r.sent) })),
		received: uint64(pick(func(r benchResult) float64 { return float64(r.received) })),
		cpu:      pick(func(r benchResult) float64 { return r.cpu }),
		lossPct:  pick(func(r benchResult) float64 { return r.loss() }),
		medians:  true,
	}
}

type benchResult struct {
	sent, received uint64
	cpu            float64 // process CPU, % of one core
	lossPct        float64 // for medians: the median loss, not derived
	medians        bool
}

func (r benchResult) format(d time.Duration, size int) string {
	return fmt.Sprintf("sent %8d  received %8d  %6.1f kpps  %7.1f Mbit/s  loss %6.2f %%  cpu %4.0f %%",
		r.sent, r.received, r.kpps(d), r.mbps(d, size), r.loss(), r.cpu)
}

func (r benchResult) kpps(d time.Duration) float64 {
	return float64(r.received) / d.Seconds() / 1000
}

func (r benchResult) mbps(d time.Duration, size int) float64 {
	return float64(r.received) * float64(size) * 8 / d.Seconds() / 1e6
}

func (r benchResult) loss() float64 {
	if r.medians {
		return r.lossPct
	}
	if r.sent == 0 {
		return 0
	}
	return 100 * (1 - float64(r.received)/float64(r.sent))
}

func benchRun(t *testing.T, via string, d time.Duration, size int, rate float64) benchResult {
	if via == "relay-reverse" {
		return benchReverse(t, d, size, rate)
	}
	snk := startSink(t, false)
	target := snk.addr()
	if via != "direct" {
		r := startRelayTo(t, target, via == "relay")
		target = r.Addrs()[0].(interface{ AddrPort() netip.AddrPort }).AddrPort()
	}
	snd := newSender(t, "127.0.0.2", target, size)
	cpu0, wall0 := processCPU(), time.Now()
	sent := snd.blast(d, rate)
	received := awaitCount(&snk.datagrams, sent)
	cpu := (processCPU() - cpu0).Seconds() / time.Since(wall0).Seconds() * 100
	return benchResult{sent: sent, received: received, cpu: cpu}
}

// benchReverse streams from the upstream to the client through a session the
// client opened with one datagram.
func benchReverse(t *testing.T, d time.Duration, size int, rate float64) benchResult {
	client := startSinkAt(t, "127.0.0.2", false)
	backend := startSink(t, false)
	r := startRelayTo(t, backend.addr(), true)
	relayAddr := r.Addrs()[0].(interface{ AddrPort() netip.AddrPort }).AddrPort()
	if _, err := senderOn(client.conn, relayAddr, 5).send(1, 0); err != nil {
		t.Fatal(err)
	}
	if awaitCount(&backend.datagrams, 1) != 1 {
		t.Fatal("the session did not open")
	}
	var upstreamSocket netip.AddrPort
	r.ports[0].mu.Lock()
	for _, s := range r.ports[0].sessions {
		upstreamSocket = s.up.Load().conn.localAddr().(interface{ AddrPort() netip.AddrPort }).AddrPort()
	}
	r.ports[0].mu.Unlock()
	snd := senderOn(backend.conn, upstreamSocket, size)
	cpu0, wall0 := processCPU(), time.Now()
	sent := snd.blast(d, rate)
	received := awaitCount(&client.datagrams, sent)
	cpu := (processCPU() - cpu0).Seconds() / time.Since(wall0).Seconds() * 100
	return benchResult{sent: sent, received: received, cpu: cpu}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestBurstBench compares the batch pool at its cap with an uncapped one
// on bursts on every port of an RTB range: datagrams a second from the
// first send to the last arrival, and the test process's CPU (senders,
// relay, sink) per datagram, rounds interleaved. It runs only when asked:
//
//	UDPSTREAM_BENCH=1 go test -run TestBurstBench -v ./udpstream/
//
// UDPSTREAM_BENCH_ROUNDS sets the rounds (default 5).
func TestBurstBench(t *testing.T) {
	if os.Getenv("UDPSTREAM_BENCH") == "" {
		t.Skip("set UDPSTREAM_BENCH=1 to run the benchmark")
	}
	const rounds = 64 // datagrams per port and burst
	modes := []struct {
		name string
		max  int
	}{{"cap", maxBatches}, {"uncapped", 0}}
	worlds := make([]*burstWorld, len(modes))
	for i, m := range modes {
		worlds[i] = newBurstWorld(t, nil, nil, true)
		pool := worlds[i].r.net.(*sysNet).pool
		pool.mu.Lock()
		pool.max = m.max
		pool.mu.Unlock()
	}
	type result struct{ rate, cpuPer, loss float64 }
	results := make([][]result, len(modes))
	for round := range envInt("UDPSTREAM_BENCH_ROUNDS", 5) {
		for i, m := range modes {
			w := worlds[i]
			pool := w.r.net.(*sysNet).pool
			pool.trim()
			pool.trim()
			pool.mu.Lock()
			pool.peak = pool.live // this round's peak
			pool.mu.Unlock()
			from := 1 + round*rounds
			base, start, cpu := w.count(), time.Now(), processCPU()
			w.send(from, from+rounds, burstSize)
			want := base + rtbPorts*rounds
			got := settledCount(w.count, want)
			d, used := time.Since(start), processCPU()-cpu
			got -= base
			n := float64(rtbPorts * rounds)
			r := result{n / d.Seconds(), float64(used.Microseconds()) / n, 100 * (1 - float64(got)/n)}
			results[i] = append(results[i], r)
			t.Logf("%-9s round %d: %6.0f datagrams/s, %5.2f µs CPU a datagram, %.1f %% lost, %d batches at most",
				m.name, round, r.rate, r.cpuPer, r.loss, w.poolPeak(pool))
		}
	}
	// Rounds of one mode ran right after the other's, under the same load
	// from the machine's other users: the median of their ratios is the
	// figure that noise moves least.
	var rateRatio, cpuRatio []float64
	for k := range results[0] {
		rateRatio = append(rateRatio, results[0][k].rate/results[1][k].rate)
		cpuRatio = append(cpuRatio, results[0][k].cpuPer/results[1][k].cpuPer)
	}
	slices.Sort(rateRatio)
	slices.Sort(cpuRatio)
	t.Logf("%s against %s, medians of %d rounds' ratios: %.2fx the datagrams a second, %.2fx the CPU a datagram",
		modes[0].name, modes[1].name, len(rateRatio), rateRatio[len(rateRatio)/2], cpuRatio[len(cpuRatio)/2])
}
