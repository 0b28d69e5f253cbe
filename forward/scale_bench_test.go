package forward

import (
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkIdleScale holds many idle proxied connections through a relay
// child at two sizes and reports, per size, the child's resident memory
// per connection (VmRSS growth), its descriptors per connection, and the
// wall time to open them all (each answered end to end) and to close them
// all (until the child holds none), with idle directions parked (the
// relay's way) and not (park=false: each keeps its goroutine).
// After the sizes, fit/park=... fits a line to the growth of RSS against
// the count (least squares) and reports its slope (KiB per connection),
// its intercept, R² and the largest deviation of a size from the line:
// linear growth is R² near 1 and a small deviation. Run:
//
//	go test -run '^$' -bench BenchmarkIdleScale -benchtime 1x ./forward/
//
// FORWARD_BENCH_IDLE_SIZES overrides the sizes (comma-separated).
//
// The ports: one (source, destination) pair of addresses holds at most the
// ~28 000 ports of the ephemeral range, so the clients dial from several
// loopback sources (127.0.0.2...) to several relay ports, and the relay
// reaches a backend port per relay port. The descriptors: the bench holds
// two per connection (client and backend ends) and the child two, so it
// raises RLIMIT_NOFILE (the hard limit too when root); the child inherits
// it. Without the room (a sandbox without CAP_SYS_RESOURCE cannot raise
// the hard limit), the sizes are scaled down, in proportion, to the
// largest that fits, and the bench logs it.
func BenchmarkIdleScale(b *testing.B) {
	sizes := []int{12500, 25000, 50000, 100000}
	if env := os.Getenv("FORWARD_BENCH_IDLE_SIZES"); env != "" {
		sizes = sizes[:0]
		for _, f := range strings.Split(env, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatalf("FORWARD_BENCH_IDLE_SIZES: %v", err)
			}
			sizes = append(sizes, n)
		}
	}
	largest := sizes[len(sizes)-1]
	room := raiseFileLimit(b, 2*largest+scaleSpareFDs)
	if fit := (room - scaleSpareFDs) / 2; largest > fit {
		// Keep the ratio between the sizes, so growth can still be read.
		b.Logf("%d connections need %d descriptors in one process, the hard limit is %d: scaling the sizes by %d/%d",
			largest, 2*largest+scaleSpareFDs, room, fit, largest)
		for i := range sizes {
			sizes[i] = sizes[i] * fit / largest
		}
	}
	backend := newHoldBackend(b, scalePorts)
	exe, _ := os.Executable()
	// The settled RSS growth at each size, per park mode, for the fit:
	// park=true is the relay; park=nobare parks directions but keeps a
	// parked pair's conns (as before bare parking); park=false parks
	// nothing.
	modes := []string{"true", "nobare", "false"}
	grown := map[string][]point{}
	for _, n := range sizes {
		for _, park := range modes {
			env := []string{}
			switch park {
			case "false":
				env = append(env, benchNoParkEnv+"=1")
			case "nobare":
				env = append(env, benchNoBareEnv+"=1")
			}
			b.Run(fmt.Sprintf("conns=%d/park=%s", n, park), func(b *testing.B) {
				for range b.N {
					child := startChild(b, exe, 0, "relay", strings.Join(backend.addrs, ","), env...)
					kib := holdIdle(b, child, backend, n)
					grown[park] = append(grown[park], point{float64(n), kib})
				}
			})
		}
	}
	for _, park := range modes {
		if len(grown[park]) < 2 {
			continue
		}
		b.Run(fmt.Sprintf("fit/park=%s", park), func(b *testing.B) {
			f := fitLine(grown[park])
			b.ReportMetric(f.slope, "slope-KiB/conn")
			b.ReportMetric(f.intercept, "intercept-KiB")
			b.ReportMetric(f.r2, "R2")
			b.ReportMetric(100*f.maxDev, "max-dev-%")
		})
	}
}

// point is one size of the scale bench: connections held, and KiB the
// relay grew by holding them.
type point struct{ x, y float64 }

// lineFit is a least-squares line y = slope*x + intercept through points,
// how well it explains them (r2, 1 = exactly), and the largest distance of
// a point from it relative to the line's value there (maxDev).
type lineFit struct {
	slope, intercept, r2, maxDev float64
}

func fitLine(ps []point) lineFit {
	n := float64(len(ps))
	var sx, sy, sxx, sxy float64
	for _, p := range ps {
		sx, sy, sxx, sxy = sx+p.x, sy+p.y, sxx+p.x*p.x, sxy+p.x*p.y
	}
	var f lineFit
	if d := n*sxx - sx*sx; d != 0 {
		f.slope = (n*sxy - sx*sy) / d
	}
	f.intercept = (sy - f.slope*sx) / n
	mean := sy / n
	var ssRes, ssTot float64
	for _, p := range ps {
		line := f.slope*p.x + f.intercept
		ssRes += (p.y - line) * (p.y - line)
		ssTot += (p.y - mean) * (p.y - mean)
		if line != 0 {
			f.maxDev = max(f.maxDev, math.Abs(p.y-line)/math.Abs(line))
		}
	}
	f.r2 = 1
	if ssTot > 0 {
		f.r2 = 1 - ssRes/ssTot
	}
	return f
}

// scalePorts is how many relay ports (and backend ports) the scale bench
// spreads its connections over; scaleSources how many client source
// addresses. 8 x ~28 000 ports leave room for 100 000 connections twice.
// scaleSpareFDs is the room a process keeps beside two descriptors per
// connection (listen sockets, free pipes, the runtime's own).
const (
	scalePorts    = 8
	scaleSources  = 8
	scaleSpareFDs = 256
)

// holdIdle opens n connections through child, measures, closes them and
// waits until the child has let go of every descriptor. It returns the KiB
// the child's settled RSS grew by while it held them.
func holdIdle(b *testing.B, child *benchChild, backend *holdBackend, n int) float64 {
	child.freeOSMemory(b)
	fds0, rss0 := countFDs(b, child), rssKiB(b, child)
	accepted0 := backend.count()
	start := time.Now()
	conns, err := openIdle(child.addrs, n)
	opened := time.Since(start)
	if err != nil {
		closeConns(conns)
		b.Fatal(err)
	}
	if got := backend.count() - accepted0; got != n {
		b.Errorf("backend accepted %d connections, want %d", got, n)
	}
	// Idle directions park after one to two parkAfter of silence.
	time.Sleep(2*defaultParkAfter + 500*time.Millisecond)
	rss, fds := rssKiB(b, child), countFDs(b, child)
	b.ReportMetric(float64(rss-rss0)/float64(n), "rss-KiB/conn")
	// The goroutines of the opening phase are gone, but their stacks stay
	// resident until the scavenger returns them, bit by bit; this is what
	// a relay that has held its idle connections a while looks like.
	// What one release costs the child (the parker's, after a burst, is
	// the same call): CPU time, in 10 ms ticks.
	cpu0 := child.cpu(b)
	child.freeOSMemory(b)
	b.ReportMetric(float64((child.cpu(b) - cpu0).Milliseconds()), "release-cpu-ms")
	settled := float64(rssKiB(b, child) - rss0)
	b.ReportMetric(settled/float64(n), "settled-rss-KiB/conn")
	if path := os.Getenv(benchHeapEnv); path != "" {
		child.heapProfile(b, fmt.Sprintf("%s.%d", path, n))
	}
	b.ReportMetric(float64(fds-fds0)/float64(n), "fds/conn")
	b.ReportMetric(opened.Seconds(), "open-s")

	start = time.Now()
	closeConns(conns)
	backend.closeAll()
	// Done when the child holds no more than before, give or take the
	// free pipes its pool may keep.
	for countFDs(b, child) > fds0+2*defaultMaxIdlePipes {
		if time.Since(start) > time.Minute {
			b.Fatalf("child still holds %d descriptors a minute after the close", countFDs(b, child)-fds0)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.ReportMetric(time.Since(start).Seconds(), "close-s")
	return settled
}

// openIdle opens n connections to addrs (round robin) from scaleSources
// loopback sources with 32 dialers. Each sends one byte and reads the
// backend's one-byte greeting, so the connection is proxied both ways
// before it idles. It gives up after two minutes.
func openIdle(addrs []string, n int) ([]net.Conn, error) {
	const dialers = 32
	deadline := time.Now().Add(2 * time.Minute)
	conns := make([]net.Conn, n)
	errs := make([]error, dialers)
	var wg sync.WaitGroup
	for w := range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var one [1]byte
			for i := w; i < n; i += dialers {
				d := net.Dialer{Timeout: 10 * time.Second, Deadline: deadline,
					LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%scaleSources))}}
				c, err := d.Dial("tcp", addrs[i%len(addrs)])
				if err == nil {
					conns[i] = c
					c.SetDeadline(deadline)
					if _, err = c.Write(one[:]); err == nil {
						_, err = io.ReadFull(c, one[:])
					}
					c.SetDeadline(time.Time{})
				}
				if err != nil {
					errs[w] = fmt.Errorf("connection %d: %w", i, err)
					return
				}
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

func closeConns(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// holdBackend accepts on several loopback ports, greets every connection
// with one byte and holds it without a goroutine per connection (100 000
// of those would cost the bench process more memory than the relay).
type holdBackend struct {
	lns   []net.Listener
	addrs []string
	wg    sync.WaitGroup

	mu    sync.Mutex // guards the following
	conns []net.Conn
	total int
}

func newHoldBackend(b *testing.B, ports int) *holdBackend {
	h := &holdBackend{}
	for range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		h.lns = append(h.lns, ln)
		h.addrs = append(h.addrs, ln.Addr().String())
		h.wg.Add(1)
		go h.serve(ln)
	}
	b.Cleanup(func() {
		for _, ln := range h.lns {
			ln.Close()
		}
		h.wg.Wait()
		h.closeAll()
	})
	return h
}

func (h *holdBackend) serve(ln net.Listener) {
	defer h.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		// Counted before the greeting: the client that reads it may
		// have the count checked at once.
		h.mu.Lock()
		h.conns = append(h.conns, c)
		h.total++
		h.mu.Unlock()
		c.Write([]byte{'+'})
	}
}

// count is how many connections the backend accepted so far.
func (h *holdBackend) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total
}

func (h *holdBackend) closeAll() {
	h.mu.Lock()
	conns := h.conns
	h.conns = nil
	h.mu.Unlock()
	closeConns(conns)
}

// raiseFileLimit lifts RLIMIT_NOFILE to want (the hard limit too, which
// root may) or as far as the hard limit allows, and returns the soft limit
// in force. Children started afterwards inherit it.
func raiseFileLimit(b *testing.B, want int) int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur >= uint64(want) {
		return int(lim.Cur)
	}
	if lim.Max < uint64(want) {
		raised := syscall.Rlimit{Cur: uint64(want), Max: uint64(want)}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			return want
		}
	}
	soft := syscall.Rlimit{Cur: min(lim.Max, uint64(want)), Max: lim.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &soft); err != nil {
		return int(lim.Cur)
	}
	return int(soft.Cur)
}

func TestFitLine(t *testing.T) {
	line := fitLine([]point{{1000, 5000}, {2000, 8000}, {4000, 14000}, {8000, 26000}})
	if math.Abs(line.slope-3) > 1e-9 || math.Abs(line.intercept-2000) > 1e-6 ||
		math.Abs(line.r2-1) > 1e-12 || line.maxDev > 1e-12 {
		t.Errorf("exact line y = 3x + 2000: got %+v", line)
	}
	// Quadratic growth, which the scale bench must not call linear.
	curve := fitLine([]point{{1, 1}, {2, 4}, {4, 16}, {8, 64}})
	if curve.r2 > 0.99 || curve.maxDev < 0.2 {
		t.Errorf("y = x²: r2 %.4f, max deviation %.2f; want r2 < 0.99 and deviation > 0.2", curve.r2, curve.maxDev)
	}
}
