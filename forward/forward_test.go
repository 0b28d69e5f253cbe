package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// TestBulkBothWays sends 64 MiB each way at once and checks both ends'
// SHA-256, the counters and the access line.
func TestBulkBothWays(t *testing.T) {
	checkLeaks(t)
	const size = 64 << 20
	got := make(chan world.Sum, 1)
	backend := world.NewBackend(t, func(c net.Conn) {
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			io.Copy(c, world.Stream(2, size))
			c.(*net.TCPConn).CloseWrite()
		}()
		s, _ := world.Hash(c)
		got <- s
		<-sent
	})
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}})
	c := r.dial(t, 0)
	c.SetDeadline(time.Now().Add(60 * time.Second))
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		io.Copy(c, world.Stream(1, size))
		c.CloseWrite()
	}()
	back, err := world.Hash(c)
	<-sent
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	if want := world.StreamSum(2, size); back != want {
		t.Errorf("client got %d bytes %x, want %d bytes %x", back.N, back.SHA, want.N, want.SHA)
	}
	if s, want := <-got, world.StreamSum(1, size); s != want {
		t.Errorf("backend got %d bytes %x, want %d bytes %x", s.N, s.SHA, want.N, want.SHA)
	}
	line := r.logs.Wait(t, `"end":"eof"`)
	if !world.ContainsAll(line, `"listener":"test"`, `"listen":"`+r.addr(0)+`"`, fmt.Sprintf(`"bytes_in":%d`, size),
		fmt.Sprintf(`"bytes_out":%d`, size), `"upstream":"`+backend.Addr()) {
		t.Errorf("access line %s", line)
	}
	world.CheckFields(t, line, append(accessKeys, "duration_ms")...)
	st := r.Stats()
	if st.BytesIn.Load() != size || st.BytesOut.Load() != size || st.Accepted.Load() != 1 {
		t.Errorf("stats in=%d out=%d accepted=%d", st.BytesIn.Load(), st.BytesOut.Load(), st.Accepted.Load())
	}
}

// TestHalfClose: the client shuts its write side, the backend reads EOF and
// only then sends a reply, which the client receives whole.
func TestHalfClose(t *testing.T) {
	checkLeaks(t)
	const replySize = 3<<20 + 17
	request := make(chan string, 1)
	backend := world.NewBackend(t, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		request <- string(b)
		io.Copy(c, world.Stream(7, replySize))
	})
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}})
	c := r.dial(t, 0)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "print this")
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := world.Hash(c)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	if got := <-request; got != "print this" {
		t.Errorf("backend read %q", got)
	}
	if want := world.StreamSum(7, replySize); reply != want {
		t.Errorf("reply %d bytes, want %d (or hash differs)", reply.N, want.N)
	}
	r.logs.Wait(t, `"end":"eof"`, `"bytes_in":10`, fmt.Sprintf(`"bytes_out":%d`, replySize))
}

// named answers every connection with its name and closes.
func named(name string) func(net.Conn) {
	return func(c net.Conn) { io.WriteString(c, name) }
}

func TestRangeMapping(t *testing.T) {
	checkLeaks(t)
	b0 := world.NewBackend(t, named("zero"))
	b1 := world.NewBackend(t, named("one"))
	r := startRelay(t, Config{Upstreams: [][]string{{b0.Addr()}, {b1.Addr()}}})
	for i, want := range []string{"zero", "one", "zero"} {
		c := r.dial(t, i%2)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || string(got) != want {
			t.Errorf("port %d: got %q, %v; want %q", i%2, got, err, want)
		}
	}
	if b0.Accepted() != 2 || b1.Accepted() != 1 {
		t.Errorf("backends accepted %d and %d, want 2 and 1", b0.Accepted(), b1.Accepted())
	}
}

func TestFailover(t *testing.T) {
	checkLeaks(t)
	good := world.NewBackend(t, world.Echo)
	dead := world.DeadAddr(t)
	r := startRelay(t, Config{Upstreams: [][]string{{dead, good.Addr()}}})
	c := r.dial(t, 0)
	if got := roundTrip(t, c, "ping"); got != "ping" {
		t.Fatalf("echo %q", got)
	}
	c.Close()
	r.logs.Wait(t, `"upstream":"`+good.Addr(), `"end":"eof"`)
	if n := r.Stats().DialFailures.Load(); n != 1 {
		t.Errorf("DialFailures = %d, want 1", n)
	}
	if n := r.Stats().Unreachable.Load(); n != 0 {
		t.Errorf("Unreachable = %d for a client the second upstream served", n)
	}
}

func TestUnreachable(t *testing.T) {
	checkLeaks(t)
	dead := world.DeadAddr(t)
	r := startRelay(t, Config{Upstreams: [][]string{{dead}}, ConnectTimeout: time.Second})
	c := r.dial(t, 0)
	expectClosed(t, c, time.Second)
	line := r.logs.Wait(t, `"end":"upstream_unreachable"`)
	if !world.ContainsAll(line, `"level":"warn"`, `"upstream":"`+dead, "connection refused",
		`"client":"127.0.0.1:`, `"listen":"`+r.addr(0)+`"`) {
		t.Errorf("warning line: %s", line)
	}
	world.CheckFields(t, line, "level", "listener", "listen", "client", "upstream", "duration_ms", "end", "error", "message")
	r.logs.Wait(t, `"message":"upstream down"`, dead, "connection refused")
	if strings.Contains(r.logs.String(), "goroutine ") || strings.Count(r.logs.String(), "\n") != 2 {
		t.Errorf("want exactly two lines (the upstream down, the client), no stack:\n%s", r.logs.String())
	}
	// While the only upstream is down, clients are closed at once and
	// cost an access line each, no more warnings.
	for range 3 {
		expectClosed(t, r.dial(t, 0), 100*time.Millisecond)
	}
	world.Eventually(t, "four access lines", func() bool {
		return strings.Count(r.logs.String(), `"end":"upstream_unreachable"`) == 4
	})
	if n := strings.Count(r.logs.String(), `"level":"warn"`); n != 2 {
		t.Errorf("%d warnings, want 2:\n%s", n, r.logs.String())
	}
	if st := r.Stats(); st.Unreachable.Load() != 4 || st.Accepted.Load() != 4 {
		t.Errorf("Unreachable %d of Accepted %d, want 4 of 4", st.Unreachable.Load(), st.Accepted.Load())
	}
}

// TestConnectTimeout uses a dialer that never answers, as a blackholed
// upstream would: the client is closed once the connect timeout passed.
func TestConnectTimeout(t *testing.T) {
	checkLeaks(t)
	hang := func(ctx context.Context, network, addr string) (net.Conn, error) {
		<-ctx.Done()
		return nil, fmt.Errorf("dial %s: %w", addr, ctx.Err())
	}
	const timeout = 200 * time.Millisecond
	r := startRelay(t, Config{Upstreams: [][]string{{"192.0.2.1:9", "192.0.2.2:9"}},
		ConnectTimeout: timeout, Dial: hang})
	c := r.dial(t, 0)
	took := expectClosed(t, c, 5*time.Second)
	if took < 2*timeout-50*time.Millisecond {
		t.Errorf("closed after %v, before both attempts timed out", took)
	}
	r.logs.Wait(t, `"end":"upstream_unreachable"`, "192.0.2.1:9,192.0.2.2:9", "deadline exceeded")
	if n := r.Stats().DialFailures.Load(); n != 2 {
		t.Errorf("DialFailures = %d, want 2", n)
	}
}

// TestDialShortOfDescriptors: a dial that fails because the relay is out
// of descriptors marks no upstream down, and its line blames the relay;
// when an upstream refused too, the line is the upstream's.
func TestDialShortOfDescriptors(t *testing.T) {
	checkLeaks(t)
	const a, b = "192.0.2.1:9", "192.0.2.2:9"
	var refuseB atomic.Bool
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		errno := syscall.EMFILE
		if addr == b && refuseB.Load() {
			errno = syscall.ECONNREFUSED
		}
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("socket", errno)}
	}
	r := startRelay(t, Config{Upstreams: [][]string{{a, b}}, Dial: dial})
	expectClosed(t, r.dial(t, 0), 5*time.Second)
	r.logs.Wait(t, `"message":"relay out of descriptors, buffers or ports, client closed"`,
		`"upstream":"`+a+","+b+`"`, `"end":"upstream_unreachable"`, "too many open files")

	refuseB.Store(true)
	expectClosed(t, r.dial(t, 0), 5*time.Second)
	r.logs.Wait(t, `"message":"upstream unreachable, client closed"`, "too many open files", "connection refused")
	if n := strings.Count(r.logs.String(), `"message":"upstream down"`); n != 1 ||
		!strings.Contains(r.logs.String(), `"upstream":"`+b+`","error"`) {
		t.Errorf("%d upstream-down lines, want 1, for %s's refusal:\n%s", n, b, r.logs)
	}
}

func TestIdleTimeout(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	const idle = 300 * time.Millisecond
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}, IdleTimeout: idle})
	c := r.dial(t, 0)
	roundTrip(t, c, "x")
	took := expectClosed(t, c, 5*time.Second)
	// Not later than parkAfter either: the front, where a connection
	// spends its first second, once left idle timeouts below it to the
	// engine, and the connection lived a second.
	if took < idle-idle/8 || took > defaultParkAfter-100*time.Millisecond {
		t.Errorf("closed after %v, idle timeout is %v", took, idle)
	}
	r.logs.Wait(t, `"end":"idle"`, `"bytes_in":1`, `"bytes_out":1`)
}

// TestIdleSparedByOneWayTraffic: a download in which the client sends
// nothing lasts longer than the idle timeout and is not cut.
func TestIdleSparedByOneWayTraffic(t *testing.T) {
	checkLeaks(t)
	// Ticks come 10x as often as the idle timeout so that a stalled CI
	// machine does not make a real idle period out of one gap (at 5x,
	// one run in a full -race run at load 15 lost the connection); the
	// ticks still last longer than one idle timeout.
	const idle = time.Second
	backend := world.NewBackend(t, func(c net.Conn) {
		for range 12 {
			io.WriteString(c, "tick")
			time.Sleep(idle / 10)
		}
	})
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}, IdleTimeout: idle})
	c := r.dial(t, 0)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != strings.Repeat("tick", 12) {
		t.Fatalf("got %q, %v\n%s", got, err, r.logs.String())
	}
}

func TestMaxConns(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}, MaxConns: 2})
	c1, c2 := r.dial(t, 0), r.dial(t, 0)
	roundTrip(t, c1, "1")
	roundTrip(t, c2, "2")
	c3 := r.dial(t, 0)
	expectClosed(t, c3, 2*time.Second)
	if n := r.Stats().Refused.Load(); n != 1 {
		t.Errorf("Refused = %d, want 1", n)
	}
	r.logs.Wait(t, `"end":"refused"`, `"max_conns":2`)
	c1.Close()
	world.Eventually(t, "a free slot", func() bool { return r.Stats().Active.Load() == 1 })
	c4 := r.dial(t, 0)
	if got := roundTrip(t, c4, "4"); got != "4" {
		t.Errorf("echo %q", got)
	}
	if n := backend.Accepted(); n != 3 {
		t.Errorf("backend accepted %d, want 3 (no dial for the refused one)", n)
	}
}

func TestRejectedByACL(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}},
		Admit: func(netip.AddrPort) bool { return false }})
	expectClosed(t, r.dial(t, 0), 2*time.Second)
	world.Eventually(t, "rejected", func() bool { return r.Stats().Rejected.Load() == 1 })
	if backend.Accepted() != 0 || r.Stats().Accepted.Load() != 0 {
		t.Errorf("rejected client reached the backend")
	}
}

func TestShutdownDrains(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}})
	c := r.dial(t, 0)
	roundTrip(t, c, "before")
	done := make(chan error, 1)
	go func() { done <- r.Shutdown(context.Background()) }()
	world.Eventually(t, "listen socket closed", func() bool {
		probe, err := net.Dial("tcp", r.addr(0))
		if err == nil {
			probe.Close()
		}
		return err != nil
	})
	if got := roundTrip(t, c, "during"); got != "during" {
		t.Errorf("open connection broken by Shutdown: %q", got)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a connection open", err)
	default:
	}
	c.Close()
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	r.logs.Wait(t, `"end":"eof"`)
}

func TestShutdownForcesAfterGrace(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}})
	c := r.dial(t, 0)
	roundTrip(t, c, "x")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := r.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want deadline exceeded", err)
	}
	expectClosed(t, c, time.Second)
	r.logs.Wait(t, `"end":"shutdown"`)
	if err := <-r.served; !errors.Is(err, ErrClosed) {
		t.Errorf("Serve = %v", err)
	}
	r.served <- ErrClosed // for the cleanup
	if err := r.Serve(); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after Shutdown = %v", err)
	}
}

func TestCloseIdempotent(t *testing.T) {
	checkLeaks(t)
	l, err := Listen(Config{Listen: []string{"127.0.0.1:0"}, Upstreams: [][]string{{"127.0.0.1:1"}}})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	l.Close()
	if err := l.Serve(); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after Close = %v", err)
	}
}

func TestListenErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no listen":      {Upstreams: [][]string{{"127.0.0.1:1"}}},
		"lengths differ": {Listen: []string{"127.0.0.1:0", "127.0.0.1:0"}, Upstreams: [][]string{{"127.0.0.1:1"}}},
		"empty list":     {Listen: []string{"127.0.0.1:0"}, Upstreams: [][]string{{}}},
		"bad address":    {Listen: []string{"127.0.0.1:99999"}, Upstreams: [][]string{{"127.0.0.1:1"}}},
		// TEST-NET-1 is no address of this box: the bind fails, no packet leaves.
		"not ours": {Listen: []string{"192.0.2.1:5000"}, Upstreams: [][]string{{"127.0.0.1:1"}}},
	} {
		t.Run(name, func(t *testing.T) {
			l, err := Listen(cfg)
			if err == nil || !strings.HasPrefix(err.Error(), "forward: ") {
				if l != nil {
					l.Close()
				}
				t.Fatalf("Listen = %v, want a forward: error", err)
			}
			for _, addr := range cfg.Listen {
				if strings.Count(err.Error(), addr) > 1 {
					t.Errorf("error %q names %s twice", err, addr)
				}
			}
		})
	}
}

// TestSecondBindRefused: a listener never shares its port (no SO_REUSEPORT):
// a second Listen on it fails with EADDRINUSE, and a successor gets the
// socket through Files and Config.Inherit instead.
func TestSecondBindRefused(t *testing.T) {
	a, err := Listen(Config{Listen: []string{"127.0.0.1:0"}, Upstreams: [][]string{{"127.0.0.1:1"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	addr := a.Addrs()[0].String()
	b, err := Listen(Config{Listen: []string{addr}, Upstreams: [][]string{{"127.0.0.1:1"}}})
	if !errors.Is(err, syscall.EADDRINUSE) {
		if b != nil {
			b.Close()
		}
		t.Fatalf("second bind on %s: %v, want EADDRINUSE", addr, err)
	}
	files, err := a.Files()
	if err != nil {
		t.Fatal(err)
	}
	b, err = Listen(Config{Listen: []string{addr}, Upstreams: [][]string{{"127.0.0.1:1"}}, Inherit: files})
	files[0].Close()
	if err != nil {
		t.Fatalf("taking the socket over: %v", err)
	}
	if got := b.Addrs()[0].String(); got != addr {
		t.Errorf("successor listens on %s, want %s", got, addr)
	}
	b.Close()
}
