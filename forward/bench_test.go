package forward

// Benchmarks of the relay against a direct connection and against a plain
// Go forwarder built on io.Copy (which splices too, with the stdlib's
// 1 MiB pipes). The forwarder under test runs in a child process (this
// test binary re-executed) so that its CPU time can be read from
// /proc/<pid>/stat apart from the load generator's. Run:
//
//	go test -run '^$' -bench . -benchtime 3s ./forward/
//
// Metrics: Gbit/s through the path, and the forwarder's CPU seconds per GB
// moved (cpu-s/GB) or CPU microseconds per connection (cpu-us/conn).
//
// FORWARD_BENCH_STRACE=dir runs the children under strace -f -c and leaves
// one summary per child in dir (syscalls per connection or per GB).
//
// BenchmarkForwardNonRoot runs the child as uid 65534 when the tests run as
// root, so that the kernel's per-user pipe accounting
// (fs.pipe-user-pages-soft) applies to it as it would to a service user.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
	"github.com/edgerelay/relay/limit"
	"github.com/edgerelay/relay/proxyhdr"
	"github.com/rs/zerolog"
)

const (
	benchChildEnv    = "FORWARD_BENCH_CHILD"
	benchUpstreamEnv = "FORWARD_BENCH_UPSTREAM"
	benchPipeEnv     = "FORWARD_BENCH_PIPE_SIZE"
	benchStraceEnv   = "FORWARD_BENCH_STRACE"       // a directory: run children under strace -c
	benchProfileEnv  = "FORWARD_BENCH_CPUPROFILE"   // a path prefix: children write CPU profiles
	benchAllocsEnv   = "FORWARD_BENCH_ALLOCPROFILE" // a path prefix: children record every allocation
	benchLevelEnv    = "FORWARD_BENCH_LOG_LEVEL"    // the relay child's log level (default: trace, every line built)
	benchNoParkEnv   = "FORWARD_BENCH_NO_PARK"      // set: the relay child parks no idle direction
	benchNoBareEnv   = "FORWARD_BENCH_NO_BARE"      // set: the relay child's parked pairs keep their conns
	benchHeapEnv     = "FORWARD_BENCH_HEAPPROFILE"  // a path prefix: the idle benches write the child's live heap
	benchChunk       = 1 << 20                      // bytes per b.N
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(benchChildEnv); mode != "" {
		os.Exit(runBenchChild(mode, os.Getenv(benchUpstreamEnv)))
	}
	os.Exit(m.Run())
}

// runBenchChild is the forwarder process: it prints its address, serves
// until stdin closes, and exits.
func runBenchChild(mode, upstream string) int {
	if path := os.Getenv(benchProfileEnv); path != "" {
		f, err := os.Create(fmt.Sprintf("%s.%s.%d", path, mode, os.Getpid()))
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	if path := os.Getenv(benchAllocsEnv) + os.Getenv(benchHeapEnv); path != "" {
		runtime.MemProfileRate = 1
	}
	if path := os.Getenv(benchAllocsEnv); path != "" {
		defer writeAllocProfile(fmt.Sprintf("%s.%s.%d", path, mode, os.Getpid()))
	}
	switch mode {
	case "relay", "relay-edge", "relay-front":
		log := zerolog.New(io.Discard).With().Timestamp().Logger()
		if level, err := zerolog.ParseLevel(os.Getenv(benchLevelEnv)); err == nil && level != zerolog.NoLevel {
			log = log.Level(level)
		}
		l, err := Listen(edgeConfig(mode, childConfig(upstream, log)))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if size, _ := strconv.Atoi(os.Getenv(benchPipeEnv)); size > 0 {
			// Every pipe this size, as the stdlib does: no budget.
			l.pool.bigSize, l.pool.budget = size, -1
		}
		if os.Getenv(benchNoParkEnv) != "" && l.parker != nil {
			// Idle directions keep their goroutines, as before parking
			// (and before the front, which hands idle pairs over bare).
			l.parker = nil
			l.useFront = false
			l.closeFrontFDs()
		}
		if os.Getenv(benchNoBareEnv) != "" && l.parker != nil {
			l.parker.noBare = true
			l.useFront = false
			l.closeFrontFDs()
		}
		fmt.Println(joinAddrList(l.Addrs()))
		go l.Serve()
		answerParent()
		l.Close()
	case "iocopy":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println(ln.Addr())
		go ioCopyForwarder(ln, upstream)
		answerParent()
		ln.Close()
	default:
		return 2
	}
	return 0
}

// childConfig is the relay child's listener: one port on 127.0.0.1 per
// upstream in the comma-separated list (BenchmarkIdleScale spreads its
// connections over several, as one 4-tuple space holds only the ~28 000
// ports of the ephemeral range).
func childConfig(upstreams string, log zerolog.Logger) Config {
	cfg := Config{Name: "bench", Log: log}
	for _, up := range strings.Split(upstreams, ",") {
		cfg.Listen = append(cfg.Listen, "127.0.0.1:0")
		cfg.Upstreams = append(cfg.Upstreams, []string{up})
	}
	return cfg
}

func joinAddrList(addrs []net.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// edgeConfig turns on the edge defences for the relay-edge and relay-front
// children: per-source limits loose enough never to refuse the benchmark's
// one source, and a PROXY v2 header to the upstream; relay-front also
// takes a v2 header from its clients, as from a trusted load balancer.
func edgeConfig(mode string, cfg Config) Config {
	if mode == "relay" {
		return cfg
	}
	cfg.PerSource = limit.Config{MaxConns: 1 << 20, Rate: 1e9, Burst: 1 << 20}
	cfg.ProxyProtocol = 2
	if mode == "relay-front" {
		cfg.AcceptProxy = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	return cfg
}

// writeHeapProfile writes the child's live heap (after a GC), its
// goroutine count and MemStats to path, for the idle benchmarks.
func writeHeapProfile(path string) {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	pprof.Lookup("heap").WriteTo(f, 1)
}

func writeAllocProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	pprof.Lookup("allocs").WriteTo(f, 0)
}

// answerParent answers the parent's questions on stdin until it closes:
// each line asks for the child's heap allocations so far (MemStats.Mallocs),
// which makes allocs/conn measurable from outside; "free" first returns
// the memory the runtime does not use to the OS.
func answerParent() {
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "free" {
			// What the runtime's scavenger reaches on its own, at once.
			debug.FreeOSMemory()
		}
		if path, ok := strings.CutPrefix(in.Text(), "heap "); ok {
			writeHeapProfile(path)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Println(ms.Mallocs)
	}
}

// ioCopyForwarder is what a Go programmer writes first: two io.Copy.
func ioCopyForwarder(ln net.Listener, upstream string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{})
			go func() {
				io.Copy(up, c)
				up.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			io.Copy(c, up)
			c.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}

// benchChild is a forwarder process.
type benchChild struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	addr   string   // the first listen address
	addrs  []string // every listen address, one per upstream
}

// startChild runs the test binary as a forwarder of mode toward upstream.
// exe and uid let the non-root benchmark run a copy as another user.
func startChild(b *testing.B, exe string, uid int, mode, upstream string, env ...string) *benchChild {
	b.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	if dir := os.Getenv(benchStraceEnv); dir != "" {
		// Count the forwarder's syscalls instead (CPU figures are then
		// strace's and meaningless).
		out := filepath.Join(dir, fmt.Sprintf("%s-%d.txt", mode, time.Now().UnixNano()))
		cmd = exec.Command("strace", "-f", "-c", "-o", out, exe, "-test.run=^$")
	}
	cmd.Env = append(os.Environ(), benchChildEnv+"="+mode, benchUpstreamEnv+"="+upstream)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	if uid > 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil {
		stdin.Close()
		cmd.Wait()
		b.Fatalf("child %s: %v", mode, err)
	}
	addrs := strings.Split(strings.TrimSpace(line), ",")
	c := &benchChild{cmd: cmd, stdin: stdin, stdout: out, addr: addrs[0], addrs: addrs}
	b.Cleanup(func() {
		c.stdin.Close()
		c.cmd.Wait()
	})
	return c
}

// cpu is the child's user+system CPU time so far.
func (c *benchChild) cpu(b *testing.B) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the ")" that closes the command name; utime and stime
	// are fields 14 and 15 of the whole line, in clock ticks (100 Hz).
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// freeOSMemory makes the child return its unused memory to the OS.
func (c *benchChild) freeOSMemory(b *testing.B) {
	if _, err := io.WriteString(c.stdin, "free\n"); err != nil {
		b.Fatal(err)
	}
	if _, err := c.stdout.ReadString('\n'); err != nil {
		b.Fatal(err)
	}
}

// heapProfile makes the child write its live heap to path.
func (c *benchChild) heapProfile(b *testing.B, path string) {
	if _, err := io.WriteString(c.stdin, "heap "+path+"\n"); err != nil {
		b.Fatal(err)
	}
	if _, err := c.stdout.ReadString('\n'); err != nil {
		b.Fatal(err)
	}
}

// mallocs is the child's count of heap allocations so far.
func (c *benchChild) mallocs(b *testing.B) uint64 {
	if _, err := io.WriteString(c.stdin, "mallocs\n"); err != nil {
		b.Fatal(err)
	}
	line, err := c.stdout.ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(line), 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// sink reads and drops everything, then closes.
func sink(c net.Conn) {
	buf := make([]byte, 256<<10)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// push sends total bytes over streams connections to addr, one way, and
// waits until every stream saw the far end close after its EOF.
func push(b *testing.B, addr string, streams int, total int64) {
	conns := make([]*net.TCPConn, streams)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = c.(*net.TCPConn)
	}
	per := total / int64(streams)
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			buf := make([]byte, 256<<10)
			for left := per; left > 0; left -= int64(len(buf)) {
				n := min(left, int64(len(buf)))
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
			c.CloseWrite()
			io.Copy(io.Discard, c)
		}()
	}
	wg.Wait()
}

// throughput runs one push per benchmark invocation and reports rates.
func throughput(b *testing.B, addr string, child *benchChild, streams int) {
	total := int64(b.N) * benchChunk
	b.SetBytes(benchChunk)
	var cpu0 time.Duration
	if child != nil {
		cpu0 = child.cpu(b)
	}
	b.ResetTimer()
	start := time.Now()
	push(b, addr, streams, total)
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(total)*8/elapsed.Seconds()/1e9, "Gbit/s")
	if child != nil {
		cpu := child.cpu(b) - cpu0
		b.ReportMetric(cpu.Seconds()/(float64(total)/1e9), "cpu-s/GB")
		b.ReportMetric(100*cpu.Seconds()/elapsed.Seconds(), "cpu-%")
	}
}

func BenchmarkForward(b *testing.B) {
	backend := world.NewBackend(b, sink)
	exe, _ := os.Executable()
	children := map[string]*benchChild{
		"relay":  startChild(b, exe, 0, "relay", backend.Addr()),
		"iocopy": startChild(b, exe, 0, "iocopy", backend.Addr()),
	}
	for _, streams := range []int{1, 8} {
		for _, mode := range []string{"direct", "relay", "iocopy"} {
			b.Run(fmt.Sprintf("%s/streams=%d", mode, streams), func(b *testing.B) {
				if c := children[mode]; c != nil {
					throughput(b, c.addr, c, streams)
				} else {
					throughput(b, backend.Addr(), nil, streams)
				}
			})
		}
	}
}

// BenchmarkPipeSize compares pipe sizes of the relay (the measurement
// behind bigPipeSize).
func BenchmarkPipeSize(b *testing.B) {
	backend := world.NewBackend(b, sink)
	exe, _ := os.Executable()
	for _, size := range []int{64 << 10, 256 << 10, 1 << 20} {
		c := startChild(b, exe, 0, "relay", backend.Addr(), fmt.Sprintf("%s=%d", benchPipeEnv, size))
		for _, streams := range []int{1, 8} {
			b.Run(fmt.Sprintf("pipe=%dK/streams=%d", size>>10, streams), func(b *testing.B) {
				throughput(b, c.addr, c, streams)
			})
		}
	}
}

// BenchmarkForwardNonRoot pushes 8 and 128 streams through forwarders
// running as an unprivileged user: the relay with its 64 KiB pipes, the
// relay forced to 1 MiB pipes, and io.Copy (1 MiB pipes).
func BenchmarkForwardNonRoot(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root to start the forwarder as another user")
	}
	// The test binary lives in a 0700 build directory; copy it where
	// the unprivileged user can run it.
	exe := unprivilegedCopy(b)
	backend := world.NewBackend(b, sink)
	children := map[string]*benchChild{
		"relay":     startChild(b, exe, 65534, "relay", backend.Addr()),
		"relay-1M":  startChild(b, exe, 65534, "relay", backend.Addr(), benchPipeEnv+"=1048576"),
		"iocopy-1M": startChild(b, exe, 65534, "iocopy", backend.Addr()),
	}
	for _, streams := range []int{8, 128} {
		for _, mode := range []string{"relay", "relay-1M", "iocopy-1M"} {
			b.Run(fmt.Sprintf("%s/streams=%d", mode, streams), func(b *testing.B) {
				c := children[mode]
				throughput(b, c.addr, c, streams)
			})
		}
	}
}

func unprivilegedCopy(b *testing.B) string {
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "forward-bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	data, err := os.ReadFile(self)
	if err != nil {
		b.Fatal(err)
	}
	exe := filepath.Join(dir, "forward.test")
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		b.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	return exe
}

// BenchmarkConnRate: 16 workers each connect, send one byte, read the echo
// and close, as the baseline's connection-rate scenario.
func BenchmarkConnRate(b *testing.B) {
	backend := world.NewBackend(b, world.Echo)
	exe, _ := os.Executable()
	children := map[string]*benchChild{
		"relay":  startChild(b, exe, 0, "relay", backend.Addr()),
		"iocopy": startChild(b, exe, 0, "iocopy", backend.Addr()),
	}
	for _, mode := range []string{"direct", "relay", "iocopy"} {
		b.Run(mode, func(b *testing.B) {
			addr, c := backend.Addr(), children[mode]
			if c != nil {
				addr = c.addr
			}
			measureConnRate(b, c, addr, nil)
		})
	}
}

// BenchmarkConnRateEdge is the connection rate with the edge defences on
// against the same relay without them, in one run: relay-edge has
// per-source limits and sends a PROXY v2 header upstream; relay-front
// also reads a v2 header from each client (a trusted front). The backend
// of the edge relays takes the 28-byte header off before echoing.
// Compare conn/s, cpu-us/conn and child-allocs/conn between the rows.
func BenchmarkConnRateEdge(b *testing.B) {
	plain := world.NewBackend(b, world.Echo)
	headed := world.NewBackend(b, func(c net.Conn) {
		hdr := make([]byte, 28)
		if _, err := io.ReadFull(c, hdr); err != nil {
			return
		}
		world.Echo(c)
	})
	exe, _ := os.Executable()
	front := proxyhdr.Append(nil, 2, netip.MustParseAddrPort("192.0.2.7:40000"), netip.MustParseAddrPort("192.0.2.1:80"))
	for _, row := range []struct {
		mode     string
		upstream string
		prefix   []byte
	}{
		{"relay", plain.Addr(), nil},
		{"relay-edge", headed.Addr(), nil},
		{"relay-front", headed.Addr(), front},
	} {
		c := startChild(b, exe, 0, row.mode, row.upstream)
		b.Run(row.mode, func(b *testing.B) { measureConnRate(b, c, c.addr, row.prefix) })
	}
}

// measureConnRate runs connRate against addr and reports the rate and, for
// a child forwarder c, its CPU and allocations per connection.
func measureConnRate(b *testing.B, c *benchChild, addr string, prefix []byte) {
	var cpu0 time.Duration
	var mallocs0 uint64
	if c != nil {
		cpu0, mallocs0 = c.cpu(b), c.mallocs(b)
	}
	start := time.Now()
	connRate(b, addr, 16, prefix)
	elapsed := time.Since(start)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "conn/s")
	if c != nil {
		b.ReportMetric(float64((c.cpu(b)-cpu0).Microseconds())/float64(b.N), "cpu-us/conn")
		b.ReportMetric(float64(c.mallocs(b)-mallocs0)/float64(b.N), "child-allocs/conn")
	}
}

// connRate opens b.N connections from workers goroutines, each sending
// prefix (if any) and one byte and reading one byte back.
func connRate(b *testing.B, addr string, workers int, prefix []byte) {
	var next sync.WaitGroup
	jobs := make(chan struct{}, b.N)
	for range b.N {
		jobs <- struct{}{}
	}
	close(jobs)
	for range workers {
		next.Add(1)
		go func() {
			defer next.Done()
			msg := append(append([]byte(nil), prefix...), 'x')
			buf := []byte{0}
			for range jobs {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					continue
				}
				c.Write(msg)
				io.ReadFull(c, buf)
				c.Close()
			}
		}()
	}
	next.Wait()
}

// statusDevice answers each byte with itself, as a printer answers a
// status request: one byte each way.
func statusDevice(c net.Conn) {
	one := make([]byte, 1)
	for {
		if _, err := c.Read(one); err != nil {
			return
		}
		if _, err := c.Write(one); err != nil {
			return
		}
	}
}

// BenchmarkRawStatusRTT measures one-byte status round trips to a printer
// that answers at once, directly and through a raw listener in this
// process, and reports the median and 99th percentile.
func BenchmarkRawStatusRTT(b *testing.B) {
	device := world.NewBackend(b, statusDevice)
	r := startRelay(b, Config{Name: "printer", Upstreams: [][]string{{device.Addr()}},
		Raw: &Raw{Exclusive: true}})
	for _, path := range []struct{ name, addr string }{
		{"direct", device.Addr()}, {"relay", r.addr(0)},
	} {
		b.Run(path.name, func(b *testing.B) {
			c, err := net.Dial("tcp", path.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			one := []byte{enq}
			rtts := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if _, err := c.Write(one); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, one); err != nil {
					b.Fatal(err)
				}
				rtts = append(rtts, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(rtts)
			b.ReportMetric(float64(rtts[len(rtts)/2])/1e3, "p50-us")
			b.ReportMetric(float64(rtts[len(rtts)*99/100])/1e3, "p99-us")
		})
	}
}

// BenchmarkTunnelStatusRTT is BenchmarkRawStatusRTT through the box
// office's and the venue's relays (mutual TLS between them, both in this
// process): one byte each way over an established tunnel. allocs/op
// counts the whole process, both relays included: what each round trip
// leaves for the collector.
func BenchmarkTunnelStatusRTT(b *testing.B) {
	device := world.NewBackend(b, statusDevice)
	p := newPKI(b, "venue-ca")
	venue := startRelay(b, Config{Name: "printer", Upstreams: [][]string{{device.Addr()}},
		TLS: p.serverTLS(b, p.path("ca.crt")).Config(), Raw: &Raw{Exclusive: true}})
	box := startRelay(b, Config{Name: "tunnel", Upstreams: [][]string{{venue.addr(0)}},
		UpstreamTLS: p.clientTLS(b, p, "boxoffice-1").Config, Raw: &Raw{}})
	c, err := net.Dial("tcp", box.addr(0))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	one := []byte{enq}
	roundTrip := func() {
		if _, err := c.Write(one); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, one); err != nil {
			b.Fatal(err)
		}
	}
	for range 100 { // the handshakes and the first records out of the way
		roundTrip()
	}
	rtts := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		roundTrip()
		rtts = append(rtts, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(rtts)
	b.ReportMetric(float64(rtts[len(rtts)/2])/1e3, "p50-us")
	b.ReportMetric(float64(rtts[len(rtts)*99/100])/1e3, "p99-us")
}

// BenchmarkIdleFDs opens 2 000 connections through each forwarder, moves
// one byte each way on every one and leaves them idle, then counts the
// forwarder's open descriptors per connection (two sockets are the least)
// and its resident memory per connection (VmRSS growth, KiB), the bench's
// tcp-idle figures on a smaller scale.
func BenchmarkIdleFDs(b *testing.B) {
	backend := world.NewBackend(b, world.Echo)
	exe, _ := os.Executable()
	for _, mode := range []string{"relay", "iocopy"} {
		b.Run(mode, func(b *testing.B) {
			child := startChild(b, exe, 0, mode, backend.Addr())
			base, rss0 := countFDs(b, child), rssKiB(b, child)
			const conns = 2000
			for range b.N {
				open := make([]net.Conn, 0, conns)
				for range conns {
					c, err := net.Dial("tcp", child.addr)
					if err != nil {
						b.Fatal(err)
					}
					c.Write([]byte{1})
					io.ReadFull(c, make([]byte, 1))
					open = append(open, c)
				}
				// Let the last pipes go back and the idle directions
				// park (after one to two parkAfter of silence).
				time.Sleep(2*defaultParkAfter + 500*time.Millisecond)
				b.ReportMetric(float64(countFDs(b, child)-base)/conns, "fds/conn")
				b.ReportMetric(float64(rssKiB(b, child)-rss0)/conns, "rss-KiB/conn")
				for _, c := range open {
					c.Close()
				}
			}
		})
	}
}

// rssKiB is the child's resident set size (VmRSS).
func rssKiB(b *testing.B, c *benchChild) int {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return kib
		}
	}
	b.Fatal("no VmRSS in /proc/<pid>/status")
	return 0
}

func countFDs(b *testing.B, c *benchChild) int {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", c.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	return len(entries)
}
