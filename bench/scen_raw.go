package main

import (
	"fmt"
	"net"
	"slices"
	"time"
)

// rawScenario is the ticket-printer path: one client asks for the printer's
// status again and again; each round trip is timed.
type rawScenario struct {
	printer *tcpServer
}

func (*rawScenario) name() string { return "raw" }

func (*rawScenario) metrics() []metric {
	return []metric{
		{key: "p50", label: "status round trip, median", unit: "µs", digits: 1},
		{key: "p99", label: "status round trip, p99", unit: "µs", digits: 1},
	}
}

func (r *rawScenario) setup(*env) ([]route, error) {
	var err error
	if r.printer, err = listenTCP(printer); err != nil {
		return nil, err
	}
	return []route{{name: "printer", mode: "raw", upstream: r.printer.addr()}}, nil
}

func (r *rawScenario) teardown()        { r.printer.close() }
func (*rawScenario) skip(string) string { return "" }
func (*rawScenario) fresh() bool        { return false }

func (r *rawScenario) measure(e *env, in *instance) (map[string]float64, error) {
	return statusRTT(in.addr("printer"), e.scale.rawSamples, "")
}

// statusRTT times rawSamples status round trips with the printer at addr
// on one connection, after a warm-up, and returns the median and p99 in
// µs under the keys prefix+"p50" and prefix+"p99".
func statusRTT(addr string, rawSamples int, prefix string) (map[string]float64, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	const warmup = 50
	samples := make([]time.Duration, 0, rawSamples)
	stop := time.Now().Add(10 * time.Second)
	var reply [1]byte
	for i := 0; i < warmup+rawSamples && time.Now().Before(stop); i++ {
		n := byte(i%4 + 1)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		if _, err := c.Write([]byte{dle, eot, n}); err != nil {
			return nil, err
		}
		if _, err := c.Read(reply[:]); err != nil {
			return nil, fmt.Errorf("status reply %d: %w", i, err)
		}
		rtt := time.Since(start)
		if reply[0] != statusReply(n) {
			return nil, integrityf("status %d: printer said %#x, the client got %#x", n, statusReply(n), reply[0])
		}
		if i >= warmup {
			samples = append(samples, rtt)
		}
	}
	if len(samples) == 0 {
		return nil, fmt.Errorf("no round trip within 10 s")
	}
	slices.Sort(samples)
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	return map[string]float64{prefix + "p50": us(percentile(samples, 50)), prefix + "p99": us(percentile(samples, 99))}, nil
}
