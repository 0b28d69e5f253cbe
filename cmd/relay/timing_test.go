package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// The figures behind BENCHMARKS.md's "Reloads and upgrades" (run without
// -race, under the shared bench lock, on as quiet a machine as there is):
//
//	go test -run '^$' -bench 'ReloadAcceptGap|UpgradeTakeover' -benchtime 50x ./cmd/relay/
//
// A client connects and waits for one echoed byte, again and again, while
// the relay reloads (a config that changes the listener's upstream each
// time) or upgrades. Its longest wait is the longest accept gap any client
// saw; a refused or reset connection fails the benchmark.
//
// On a shared machine that longest wait is mostly the machine's own
// jitter, so every operation is paired with a quiet window of the same
// length just before it, in the same run: the client's waits that began in
// quiet windows are the baseline (idle-*), those that began during an
// operation the figure (op-*). The relay's own gap is what op-* shows
// beyond idle-*.

// prober is that client: it records when each connection began and how
// long it waited for its first echoed byte.
type prober struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex // guards the following
	probes []probe
	failed []string
}

type probe struct {
	began time.Time
	wait  time.Duration
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
				p.probes = append(p.probes, probe{start, time.Since(start)})
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

// window is a span of the run: an operation, or the quiet before it.
type window struct{ from, to time.Time }

// windows times each of n operations and a quiet window of the same
// length before it (the first one's length is guess).
type windows struct {
	idle, op []window
	last     time.Duration
}

// run waits quietly as long as the last operation took, then times op;
// only op counts in b's time per op.
func (w *windows) run(b *testing.B, op func()) {
	b.StopTimer()
	quiet := time.Now()
	time.Sleep(w.last) // the quiet window is the measurement
	b.StartTimer()
	begin := time.Now()
	op()
	end := time.Now()
	w.idle = append(w.idle, window{quiet, begin})
	w.op = append(w.op, window{begin, end})
	w.last = end.Sub(begin)
}

// waitsIn returns the waits of the connections that began in one of ws.
func waitsIn(probes []probe, ws []window) []time.Duration {
	var out []time.Duration
	for _, pr := range probes {
		for _, w := range ws {
			if !pr.began.Before(w.from) && pr.began.Before(w.to) {
				out = append(out, pr.wait)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// finish stops the client and reports, for the operations and for the
// quiet windows, the longest and 99th-percentile wait, the connections
// that waited over 10 ms, and how many connections there were.
func (p *prober) finish(b *testing.B, w *windows) {
	close(p.stop)
	p.wg.Wait()
	if len(p.failed) > 0 {
		b.Fatalf("%d connections failed, the first: %s", len(p.failed), p.failed[0])
	}
	for _, phase := range []struct {
		name string
		ws   []window
	}{{"op", w.op}, {"idle", w.idle}} {
		waits := waitsIn(p.probes, phase.ws)
		if len(waits) == 0 {
			b.Fatalf("no connection completed in the %s windows", phase.name)
		}
		slow := len(waits) - sort.Search(len(waits), func(i int) bool { return waits[i] > 10*time.Millisecond })
		b.ReportMetric(ms(waits[len(waits)-1]), phase.name+"-max-wait-ms")
		b.ReportMetric(ms(waits[len(waits)*99/100]), phase.name+"-p99-wait-ms")
		b.ReportMetric(float64(slow), phase.name+"-waits>10ms")
		b.ReportMetric(float64(len(waits)), phase.name+"-conns")
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// benchRelay starts the installed binary on a one-listener config whose
// upstream alternates between two echo backends.
func benchRelay(b testing.TB) (proc *relayProc, logs *world.LogBuffer, addr string, render func(i int) string, cfg string) {
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
	w := &windows{last: 20 * time.Millisecond}
	b.ResetTimer()
	for i := range b.N {
		w.run(b, func() {
			if err := os.WriteFile(cfg, []byte(render(i+1)), 0o644); err != nil {
				b.Fatal(err)
			}
			_ = proc.cmd.Process.Signal(syscall.SIGHUP)
			logs.WaitCount(b, i+1, "reload applied")
		})
	}
	b.StopTimer()
	p.finish(b, w)
}

// BenchmarkUpgradeTakeover: one op is a binary upgrade, from SIGUSR2 until
// the old process logs that the new one serves (it accepts by then: it
// says so only after its listeners serve); ns/op is that time.
func BenchmarkUpgradeTakeover(b *testing.B) {
	proc, logs, addr, _, _ := benchRelay(b)
	pid := proc.cmd.Process.Pid
	defer func() { _ = syscall.Kill(pid, syscall.SIGKILL) }()
	p := startProber(addr)
	w := &windows{last: 100 * time.Millisecond}
	b.ResetTimer()
	for i := range b.N {
		w.run(b, func() { pid = upgrade(b, pid, logs, i+1) })
	}
	b.StopTimer()
	p.finish(b, w)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	logs.WaitCount(b, b.N+1, "relay stopped")
	_ = proc.cmd.Wait()
}
