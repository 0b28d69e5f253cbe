package main

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// tcpThroughput is bulk upload through the forwarder with 1 and 8
// concurrent streams: Gbit/s at the backend, and the forwarder's CPU time
// per GB moved.
type tcpThroughput struct {
	sunk  atomic.Int64 // bytes the sink read in the current measurement
	sink  *tcpServer
	hash  *tcpServer
	check []byte     // sent through the hash backend before each measurement
	block []byte     // what the streams write, over and over
	iperf *iperfLoad // the second load source; nil without iperf3
}

func (*tcpThroughput) name() string { return "tcp" }

func (t *tcpThroughput) metrics() []metric {
	ms := []metric{
		{key: "gbps1", label: "1 stream", unit: "Gbit/s", higher: true, digits: 1},
		{key: "cpu1", label: "1 stream, forwarder CPU", unit: "s/GB", forwarderOnly: true, digits: 3},
		{key: "gbps8", label: "8 streams", unit: "Gbit/s", higher: true, digits: 1},
		{key: "cpu8", label: "8 streams, forwarder CPU", unit: "s/GB", forwarderOnly: true, digits: 3},
		{key: "sleeps8", label: "8 streams, forwarder sleeps per MB", forwarderOnly: true, digits: 2},
		{key: "load8", label: "8 streams, bench's writers + sink CPU", unit: "s/GB", digits: 3},
	}
	if t.iperf != nil {
		ms = append(ms,
			metric{key: "iperf-gbps1", label: "iperf3, 1 stream", unit: "Gbit/s", higher: true, digits: 1},
			metric{key: "iperf-cpu1", label: "iperf3, 1 stream, forwarder CPU", unit: "s/GB", forwarderOnly: true, digits: 3},
			metric{key: "iperf-gbps8", label: "iperf3 -P 8", unit: "Gbit/s", higher: true, digits: 1},
			metric{key: "iperf-cpu8", label: "iperf3 -P 8, forwarder CPU", unit: "s/GB", forwarderOnly: true, digits: 3},
			metric{key: "iperf-sleeps8", label: "iperf3 -P 8, forwarder sleeps per MB", forwarderOnly: true, digits: 2},
			metric{key: "iperf-load8", label: "iperf3 -P 8, iperf3 client + server CPU", unit: "s/GB", digits: 3},
		)
	}
	return ms
}

func (t *tcpThroughput) setup(e *env) ([]route, error) {
	var err error
	if t.sink, err = listenTCP(sink(&t.sunk)); err != nil {
		return nil, err
	}
	if t.hash, err = listenTCP(hashReply); err != nil {
		t.sink.close()
		return nil, err
	}
	t.check = randomBytes(e.scale.checkBytes, 1)
	t.block = randomBytes(256<<10, 2)
	routes := []route{
		{name: "bulk", mode: "tcp", upstream: t.sink.addr()},
		{name: "bulk-check", mode: "tcp", upstream: t.hash.addr()},
	}
	if t.iperf, err = startIperf(e); err != nil {
		t.teardown()
		return nil, fmt.Errorf("iperf3 server: %w", err)
	}
	if t.iperf != nil {
		routes = append(routes, route{name: "iperf", mode: "tcp", upstream: t.iperf.addr})
	}
	return routes, nil
}

func (t *tcpThroughput) teardown() {
	t.sink.close()
	t.hash.close()
	if t.iperf != nil {
		t.iperf.close()
	}
}

func (*tcpThroughput) skip(string) string { return "" }
func (*tcpThroughput) fresh() bool        { return false }

func (t *tcpThroughput) measure(e *env, in *instance) (map[string]float64, error) {
	if err := hashTransfer(in.addr("bulk-check"), t.check, 30*time.Second); err != nil {
		return nil, fmt.Errorf("SHA-256 transfer: %w", err)
	}
	out := map[string]float64{}
	for _, n := range []int{1, 8} {
		self0 := selfCPU()
		sleeps0, err := in.sleeps()
		if err != nil {
			return nil, err
		}
		gbps, cpu, err := t.streams(e, in, n)
		if err != nil {
			return nil, fmt.Errorf("%d streams: %w", n, err)
		}
		out[fmt.Sprintf("gbps%d", n)] = gbps
		if in.hasProcess() {
			out[fmt.Sprintf("cpu%d", n)] = cpu
		}
		if n != 8 {
			continue
		}
		// The load's own cost: on 2 cores, what it takes is what the
		// forwarder cannot have.
		mb := float64(t.sunk.Load()) / 1e6
		out["load8"] = (selfCPU() - self0).Seconds() / (mb / 1e3)
		if sleeps1, err := in.sleeps(); err == nil && in.hasProcess() {
			out["sleeps8"] = float64(sleeps1-sleeps0) / mb
		}
	}
	if t.iperf == nil {
		return out, nil
	}
	for _, n := range []int{1, 8} {
		r, err := t.iperf.run(e, in, in.addr("iperf"), n)
		if err != nil {
			return out, fmt.Errorf("iperf3 -P %d: %w", n, err)
		}
		out[fmt.Sprintf("iperf-gbps%d", n)] = r.gbps
		if in.hasProcess() {
			out[fmt.Sprintf("iperf-cpu%d", n)] = r.cpuPerGB
		}
		if n == 8 {
			out["iperf-load8"] = r.loadPerGB
			if in.hasProcess() {
				out["iperf-sleeps8"] = r.sleepsPerMB
			}
		}
	}
	return out, nil
}

// selfCPU is the CPU time the bench process has used so far: the load
// generator and the backends of the scenario that runs.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// streams runs n uploads for one window and returns Gbit/s and the
// forwarder's CPU seconds per GB. The window ends when the sink has read
// every byte the senders wrote.
func (t *tcpThroughput) streams(e *env, in *instance, n int) (gbps, cpuPerGB float64, err error) {
	return uploadStreams(e, in, in.addr("bulk"), n, &t.sunk, t.block)
}

// uploadStreams runs n uploads of block to addr, whose sink counts into
// sunk, for one window, and returns Gbit/s and in's CPU seconds per GB.
func uploadStreams(e *env, in *instance, addr string, n int, sunk *atomic.Int64, block []byte) (gbps, cpuPerGB float64, err error) {
	conns, err := dialN(addr, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err != nil {
		return 0, 0, err
	}
	sunk.Store(0)
	cpu0, err := in.cpu()
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	total, err := uploadAll(conns, block, start.Add(e.scale.window))
	if err != nil {
		return 0, 0, err
	}
	if err := waitCount(sunk, total, 30*time.Second); err != nil {
		return 0, 0, err
	}
	elapsed := time.Since(start)
	cpu1, err := in.cpu()
	if err != nil {
		return 0, 0, err
	}
	gb := float64(total) / 1e9
	return gb * 8 / elapsed.Seconds(), (cpu1 - cpu0).Seconds() / gb, nil
}

// dialN opens n connections to addr.
func dialN(addr string, n int) ([]net.Conn, error) {
	var conns []net.Conn
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return conns, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// uploadAll writes block over every connection at once until stop and
// returns the bytes written in all.
func uploadAll(conns []net.Conn, block []byte, stop time.Time) (int64, error) {
	sent := make([]int64, len(conns))
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent[i], errs[i] = upload(c, block, stop)
		}()
	}
	wg.Wait()
	var total int64
	for i := range conns {
		total += sent[i]
	}
	return total, errors.Join(errs...)
}

// upload writes block until stop.
func upload(c net.Conn, block []byte, stop time.Time) (int64, error) {
	_ = c.SetWriteDeadline(stop.Add(30 * time.Second))
	var sent int64
	// Bounded by time and, should the clock misbehave, by count.
	for i := 0; i < 1<<24 && time.Now().Before(stop); i++ {
		n, err := c.Write(block)
		sent += int64(n)
		if err != nil {
			return sent, fmt.Errorf("write: %w", err)
		}
	}
	return sent, nil
}

// waitCount waits until counter reaches want. It fails when the counter
// stops short of want for timeout, or passes it: then bytes were lost, or
// arrived that were never sent.
func waitCount(counter *atomic.Int64, want int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got := counter.Load()
		switch {
		case got == want:
			return nil
		case got > want:
			return integrityf("sent %d bytes, the sink read %d", want, got)
		case time.Now().After(deadline):
			return integrityf("sent %d bytes, the sink read %d within %v", want, got, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}
