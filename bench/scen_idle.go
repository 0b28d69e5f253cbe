package main

import (
	"fmt"
	"math"
	"net"
	"sync"
	"time"
)

// idleDialers is how many goroutines open the idle connections.
const idleDialers = 32

// The settled moment at which tcp-idle reads a forwarder's memory: the
// connections have been quiet for at least idleSettle, and the RSS has
// then stayed within idleSteady of its value for idleSteadyFor (read every
// idleSample), or idleSettleMax has passed. Why not a fixed delay: a
// forwarder may hand memory back to the OS some time after its
// connections went idle (relay does once its idle directions have parked,
// a second or two after the burst), and a reading taken while it does so
// would be neither the burst's peak nor the settled cost.
const (
	idleSettle    = 2500 * time.Millisecond
	idleSteady    = 0.01
	idleSteadyFor = 2 * time.Second
	idleSample    = 250 * time.Millisecond
	idleSettleMax = 15 * time.Second
)

// tcpIdle holds many idle proxied connections and reads what they cost the
// forwarder: resident memory and descriptors per connection.
type tcpIdle struct {
	n    int // connections held
	echo *remoteEcho
}

func (*tcpIdle) name() string { return "tcp-idle" }

func (t *tcpIdle) metrics() []metric {
	held := formatValue(float64(t.n), 0)
	return []metric{
		{key: "rss", label: held + " idle conns, RSS per conn", unit: "KiB", forwarderOnly: true, digits: 1},
		{key: "fds", label: held + " idle conns, fds per conn", forwarderOnly: true, digits: 2},
	}
}

func (t *tcpIdle) setup(e *env) ([]route, error) {
	t.n = min(e.scale.idleConns, e.maxConns())
	var err error
	if t.echo, err = startRemoteEcho(); err != nil {
		return nil, err
	}
	return []route{{name: "idle", mode: "tcp", upstream: t.echo.addr}}, nil
}

func (t *tcpIdle) teardown() { t.echo.close() }

func (*tcpIdle) skip(fwd string) string {
	switch fwd {
	case "direct":
		return "no forwarder to measure"
	case "socat":
		return "forks a process per connection"
	case "rinetd":
		return "waits in select(2), made for 1 024 descriptors: 9 600 connections took 86 s to set up"
	}
	return ""
}

// fresh: a forwarder that held connections in an earlier run keeps some of
// that memory, which would hide the cost of the next run's.
func (*tcpIdle) fresh() bool { return true }

func (t *tcpIdle) measure(_ *env, in *instance) (map[string]float64, error) {
	before, err := in.memory()
	if err != nil {
		return nil, err
	}
	accepted, _, err := t.echo.counts()
	if err != nil {
		return nil, err
	}
	conns, err := dialMany(in.addr("idle"), t.n)
	defer closeAll(conns, t.echo)
	if err != nil {
		return nil, err
	}
	if err := t.waitAccepted(accepted+int64(t.n), 30*time.Second); err != nil {
		return nil, err
	}
	// Idle means quiet for a while: the relay parks a direction after one
	// to two seconds of silence (forward's package doc).
	after, err := settledMemory(in)
	if err != nil {
		return nil, err
	}
	if err := echoEach(conns); err != nil {
		return nil, err
	}
	n := float64(t.n)
	return map[string]float64{
		"rss": float64(after.rssKiB-before.rssKiB) / n,
		"fds": float64(after.fds-before.fds) / n,
	}, nil
}

// settledMemory waits for the settled moment (see idleSettle) and returns
// the memory read then.
func settledMemory(in *instance) (memory, error) {
	start := time.Now()
	time.Sleep(idleSettle)
	steadySince := time.Now()
	ref, err := in.memory()
	for err == nil && time.Since(steadySince) < idleSteadyFor && time.Since(start) < idleSettleMax {
		time.Sleep(idleSample)
		var m memory
		if m, err = in.memory(); err != nil {
			break
		}
		if math.Abs(float64(m.rssKiB-ref.rssKiB)) > idleSteady*float64(ref.rssKiB) {
			ref, steadySince = m, time.Now()
		}
	}
	return ref, err
}

// waitAccepted waits until the backend has accepted want connections in
// all: then every client connection has its upstream leg.
func (t *tcpIdle) waitAccepted(want int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got, _, err := t.echo.counts()
		if err != nil || got >= want {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("backend accepted %d of %d connections within %v",
				t.n-int(want-got), t.n, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dialMany opens n connections with idleDialers goroutines, giving up
// after 30 s.
func dialMany(addr string, n int) ([]net.Conn, error) {
	deadline := time.Now().Add(30 * time.Second)
	conns := make([]net.Conn, n)
	errs := make([]error, idleDialers)
	var wg sync.WaitGroup
	for w := range idleDialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += idleDialers {
				if time.Now().After(deadline) {
					errs[w] = fmt.Errorf("connection %d not opened within 30 s", i)
					return
				}
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					errs[w] = fmt.Errorf("connection %d: %w", i, err)
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return conns, err
		}
	}
	return conns, nil
}

// echoEach sends one byte on every connection and checks the echo: each
// idle connection really reaches the backend, both ways.
func echoEach(conns []net.Conn) error {
	errs := make([]error, idleDialers)
	var wg sync.WaitGroup
	for w := range idleDialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(conns); i += idleDialers {
				if err := echoOne(conns[i], byte(i)); err != nil {
					errs[w] = fmt.Errorf("connection %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func echoOne(c net.Conn, b byte) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{b}); err != nil {
		return err
	}
	var got [1]byte
	if _, err := c.Read(got[:]); err != nil {
		return integrityf("no echo: %v", err)
	}
	if got[0] != b {
		return integrityf("echo returned %#x for %#x", got[0], b)
	}
	return nil
}

// closeAll closes the client connections and waits, up to a bound, for the
// backend to see them go, so the next forwarder starts from a quiet backend.
func closeAll(conns []net.Conn, backend *remoteEcho) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if _, open, err := backend.counts(); err != nil || open == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
