package main

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"time"
)

// rttBlocks is how many turns statusRTTs takes through each target. A turn
// of a few hundred round trips lasts well under 100 ms, so the targets
// share whatever the machine does over the measurement.
const rttBlocks = 10

// rttWarmup round trips go through each target before any is timed.
const rttWarmup = 50

// rttTarget is one printer connection's worth of status round trips:
// through addr, its figures stored under prefix+"p50" and prefix+"p99".
type rttTarget struct {
	addr, prefix string
}

// rttConn is a target under way.
type rttConn struct {
	c       net.Conn
	samples []time.Duration
	err     error
	next    byte // the status asked next
}

// statusRTTs times rawSamples status round trips through every target in
// turns (rttBlocks of them: A B C, C B A, ...) on one connection each, and
// returns each target's median and p99 in µs, or why it failed. Taking
// turns rather than one target after the other is what makes the p99
// comparable: one target's thousands of round trips last a second or more,
// over which a shared machine's load drifts more than forwarders differ,
// and a p99 taken in one forwarder's own turn ranked them by when they ran
// (BENCHMARKS, "Round trips in turns").
func statusRTTs(targets []rttTarget, rawSamples int) ([]map[string]float64, []error) {
	conns := make([]*rttConn, len(targets))
	for i, t := range targets {
		rc := &rttConn{samples: make([]time.Duration, 0, rawSamples)}
		conns[i] = rc
		if rc.c, rc.err = net.DialTimeout("tcp", t.addr, 5*time.Second); rc.err != nil {
			continue
		}
		for range rttWarmup {
			if _, rc.err = rc.roundTrip(); rc.err != nil {
				break
			}
		}
	}
	defer func() {
		for _, rc := range conns {
			if rc.c != nil {
				rc.c.Close()
			}
		}
	}()
	perBlock := max(1, rawSamples/rttBlocks)
	stop := time.Now().Add(time.Duration(len(targets)) * 10 * time.Second)
	order := make([]int, len(conns))
	for i := range order {
		order[i] = i
	}
	for b := 0; b < rttBlocks && time.Now().Before(stop); b++ {
		for _, i := range order {
			rc := conns[i]
			for k := 0; k < perBlock && rc.err == nil; k++ {
				var rtt time.Duration
				if rtt, rc.err = rc.roundTrip(); rc.err == nil {
					rc.samples = append(rc.samples, rtt)
				}
			}
		}
		slices.Reverse(order)
	}
	vals := make([]map[string]float64, len(targets))
	errs := make([]error, len(targets))
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	for i, rc := range conns {
		errs[i] = rc.err
		if rc.err == nil && len(rc.samples) == 0 {
			errs[i] = errors.New("no round trip within the time given")
		}
		if errs[i] != nil {
			continue
		}
		slices.Sort(rc.samples)
		p := targets[i].prefix
		vals[i] = map[string]float64{p + "p50": us(percentile(rc.samples, 50)), p + "p99": us(percentile(rc.samples, 99))}
	}
	return vals, errs
}

// roundTrip asks the printer for one status and checks the answer.
func (rc *rttConn) roundTrip() (time.Duration, error) {
	rc.next = rc.next%4 + 1
	n := rc.next
	var reply [1]byte
	_ = rc.c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := rc.c.Write([]byte{dle, eot, n}); err != nil {
		return 0, err
	}
	if _, err := rc.c.Read(reply[:]); err != nil {
		return 0, fmt.Errorf("status reply: %w", err)
	}
	rtt := time.Since(start)
	if reply[0] != statusReply(n) {
		return 0, integrityf("status %d: printer said %#x, the client got %#x", n, statusReply(n), reply[0])
	}
	return rtt, nil
}
