package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// The figures behind BENCHMARKS.md's "Reloads and upgrades" (run without
// -race, on an otherwise idle machine for absolute values):
//
//	go test -run '^$' -bench 'ReloadAcceptGap|UpgradeTakeover' -benchtime 50x ./cmd/relay/
//
// A client connects and waits for one echoed byte, again and again, while
// the relay reloads (a config that changes the listener's upstream each
// time) or upgrades. Its longest wait is the longest accept gap any client
// saw; a refused or reset connection fails the benchmark.

// prober is that client: it records every connection's time to the first
// echoed byte.
type prober struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex // guards the following
	waits  []time.Duration
	failed []string
	// idleMax is the longest wait while nothing happened (see baseline).
	idleMax time.Duration
}

func startProber(addr string) *prober {
	p := &prober{stop: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for i := 0; i < 1_000_000; i++ {
			select {
			case <-p.stop:
				return
			default:
			}
			start := time.Now()
			err := probeOnce(addr)
			p.mu.Lock()
			if err != nil {
				p.failed = append(p.failed, err.Error())
			} else {
				p.waits = append(p.waits, time.Since(start))
			}
			p.mu.Unlock()
		}
	}()
	return p
}

func probeOnce(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{1}); err != nil {
		return err
	}
	_, err = io.ReadFull(c, make([]byte, 1))
	return err
}

// baseline lets the client run for d with nothing happening and keeps its
// longest wait: the machine's own jitter, to read the others against.
func (p *prober) baseline(b *testing.B, d time.Duration) {
	time.Sleep(d) // the measurement is what happens meanwhile
	p.mu.Lock()
	waits := slices.Clone(p.waits)
	p.waits = p.waits[:0]
	p.mu.Unlock()
	if len(waits) == 0 {
		b.Fatal("no connection completed")
	}
	p.idleMax = slices.Max(waits)
}

// finish stops the client and reports its longest and 99th-percentile wait.
func (p *prober) finish(b *testing.B) {
	close(p.stop)
	p.wg.Wait()
	if len(p.failed) > 0 {
		b.Fatalf("%d connections failed, the first: %s", len(p.failed), p.failed[0])
	}
	slices.Sort(p.waits)
	if len(p.waits) == 0 {
		b.Fatal("no connection completed")
	}
	b.ReportMetric(ms(p.idleMax), "idle-max-wait-ms")
	b.ReportMetric(ms(p.waits[len(p.waits)-1]), "max-wait-ms")
	b.ReportMetric(ms(p.waits[len(p.waits)*99/100]), "p99-wait-ms")
	b.ReportMetric(float64(len(p.waits)), "conns")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// benchRelay starts the installed binary on a one-listener config whose
// upstream alternates between two echo backends.
func benchRelay(b *testing.B) (proc *relayProc, logs *world.LogBuffer, addr string, render func(i int) string, cfg string) {
	backends := [2]*world.Backend{world.NewBackend(b, world.Echo), world.NewBackend(b, world.Echo)}
	port := world.ReserveTCPPort(b)
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	render = func(i int) string {
		return fmt.Sprintf("admin: {listen: \"\"}\nlog: {format: json}\n"+
			"listeners:\n  - {name: web, mode: tcp, listen: %q, upstream: %q}\n", addr, backends[i%2].Addr())
	}
	cfg = writeConfig(b, render(0))
	proc, logs = startCopy(b, cfg)
	return proc, logs, addr, render, cfg
}

// BenchmarkReloadAcceptGap: one op is a reload that changes the listener
// (SIGHUP until "reload applied" is logged).
func BenchmarkReloadAcceptGap(b *testing.B) {
	proc, logs, addr, render, cfg := benchRelay(b)
	defer func() { _ = proc.cmd.Process.Kill(); _ = proc.cmd.Wait() }()
	p := startProber(addr)
	p.baseline(b, time.Second)
	b.ResetTimer()
	for i := range b.N {
		if err := os.WriteFile(cfg, []byte(render(i+1)), 0o644); err != nil {
			b.Fatal(err)
		}
		_ = proc.cmd.Process.Signal(syscall.SIGHUP)
		logs.WaitCount(b, i+1, "reload applied")
	}
	b.StopTimer()
	p.finish(b)
}

// BenchmarkUpgradeTakeover: one op is a binary upgrade, from SIGUSR2 until
// the old process logs that the new one serves.
func BenchmarkUpgradeTakeover(b *testing.B) {
	proc, logs, addr, _, _ := benchRelay(b)
	pid := proc.cmd.Process.Pid
	defer func() { _ = syscall.Kill(pid, syscall.SIGKILL) }()
	p := startProber(addr)
	p.baseline(b, time.Second)
	b.ResetTimer()
	for i := range b.N {
		pid = upgrade(b, pid, logs, i+1)
	}
	b.StopTimer()
	p.finish(b)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	logs.WaitCount(b, b.N+1, "relay stopped")
	_ = proc.cmd.Wait()
}
