package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os/exec"
	"strconv"
	"time"
)

// iperfLoad is iperf3 as a second load source of the tcp scenario: its
// server is the backend, and its client pushes 1 and 8 streams through
// each forwarder. The bench's own load generator is Go, in the bench's
// process; iperf3 is C, one process for all its streams, writing 128 KiB
// at a time. A forwarder's lead must hold under both.
type iperfLoad struct {
	bin  string
	srv  *process
	addr string // the server's address
}

// startIperf starts `iperf3 -s` on a loopback port. It returns nil, and no
// error, when iperf3 is not installed (make peers installs it).
func startIperf(e *env) (*iperfLoad, error) {
	bin := lookBin("iperf3")
	if bin == "" {
		return nil, nil
	}
	port, err := e.ports.one()
	if err != nil {
		return nil, err
	}
	srv, err := e.startProcess("iperf3-server", bin, "-s", "-4", "-B", "127.0.0.1", "-p", strconv.Itoa(port))
	if err != nil {
		return nil, err
	}
	if err := srv.waitListening([]portSpec{{proto: "tcp", port: port}}, 10*time.Second); err != nil {
		_ = srv.stop(time.Second)
		return nil, err
	}
	return &iperfLoad{bin: bin, srv: srv, addr: loopback(port)}, nil
}

func (l *iperfLoad) close() { _ = l.srv.stop(2 * time.Second) }

// iperfResult is the part of `iperf3 -J` the bench reads.
type iperfResult struct {
	End struct {
		SumSent     iperfSum `json:"sum_sent"`
		SumReceived iperfSum `json:"sum_received"`
		CPU         struct {
			Host   float64 `json:"host_total"`
			Remote float64 `json:"remote_total"`
		} `json:"cpu_utilization_percent"`
	} `json:"end"`
	Error string `json:"error"`
}

type iperfSum struct {
	Seconds float64 `json:"seconds"`
	Bytes   int64   `json:"bytes"`
	Bps     float64 `json:"bits_per_second"`
}

// parseIperf reads `iperf3 -J` output; an error the run reported in its
// JSON comes back as an error.
func parseIperf(b []byte) (iperfResult, error) {
	var r iperfResult
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("iperf3 -J output: %w", err)
	}
	if r.Error != "" {
		return r, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived.Bytes <= 0 || r.End.SumReceived.Seconds <= 0 {
		return r, integrityf("iperf3: the server received nothing")
	}
	// The server stops counting when the client ends the test, with the
	// last bytes still in the forwarder's buffers: received trails sent by
	// up to those buffers, but can never pass it.
	if r.End.SumReceived.Bytes > r.End.SumSent.Bytes {
		return r, integrityf("iperf3: sent %d bytes, the server received %d", r.End.SumSent.Bytes, r.End.SumReceived.Bytes)
	}
	return r, nil
}

// iperfFigures is what one iperf3 run measured.
type iperfFigures struct {
	gbps      float64 // at the server
	cpuPerGB  float64 // the forwarder's CPU seconds per GB sent
	loadPerGB float64 // iperf3's, client and server

	sleepsPerMB float64 // the forwarder's threads went to sleep, per MB sent
}

// run pushes n streams from the iperf3 client through addr for one window
// (whole seconds, at least one).
func (l *iperfLoad) run(e *env, in *instance, addr string, n int) (iperfFigures, error) {
	var f iperfFigures
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return f, err
	}
	secs := max(1, int(math.Round(e.scale.window.Seconds())))
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.bin, "-c", host, "-p", port, "-4", "-J",
		"-P", strconv.Itoa(n), "-t", strconv.Itoa(secs), "--connect-timeout", "5000")
	cpu0, err := in.cpu()
	if err != nil {
		return f, err
	}
	sleeps0, err := in.sleeps()
	if err != nil {
		return f, err
	}
	out, runErr := cmd.Output()
	cpu1, err := in.cpu()
	if err != nil {
		return f, err
	}
	sleeps1, err := in.sleeps()
	if err != nil {
		return f, err
	}
	r, err := parseIperf(out)
	if err != nil {
		var exit *exec.ExitError
		if errors.As(runErr, &exit) && len(out) == 0 {
			return f, fmt.Errorf("iperf3 client: %v: %s", runErr, exit.Stderr)
		}
		return f, err
	}
	gb := float64(r.End.SumSent.Bytes) / 1e9
	f.gbps = r.End.SumReceived.Bps / 1e9
	f.cpuPerGB = (cpu1 - cpu0).Seconds() / gb
	// iperf3 gives each end's CPU as a percentage of the test's duration.
	f.loadPerGB = (r.End.CPU.Host + r.End.CPU.Remote) / 100 * r.End.SumSent.Seconds / gb
	f.sleepsPerMB = float64(sleeps1-sleeps0) / (gb * 1e3)
	return f, nil
}
