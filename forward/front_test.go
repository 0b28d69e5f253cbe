//go:build linux

package forward

// Behaviour of the plain tcp Listener as clients and upstreams see it,
// built the production way (no Config.Dial, IP-literal upstreams), so
// that whatever serves such listeners (goroutines, or an event loop that
// hands long connections to the pipe) is held to the same bytes, access
// lines and counters. Cases the older tests already hold without
// Config.Dial (TestBulkBothWays, TestHalfClose, TestFailover,
// TestUnreachable, TestIdleTimeout, TestMaxConns, TestRejectedByACL,
// TestShutdownDrains, TestShutdownForcesAfterGrace) are not repeated.

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
	"golang.org/x/sys/unix"
)

// checkFrontLeaks fails the test if goroutines or sockets outlive it.
// Registered first, its checks run after every other cleanup.
func checkFrontLeaks(t *testing.T) {
	base := openSockets(t)
	t.Cleanup(func() {
		world.Eventually(t, fmt.Sprintf("open sockets back to %d", base), func() bool { return openSockets(t) == base })
	})
	checkLeaks(t)
}

// echoOnce is one short client: it sends seed's stream of size bytes,
// half-closes, reads the echo to EOF and checks it. It returns the
// client's address, the "client" field of its access line.
func echoOnce(addr string, seed uint64, size int64) (string, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	local := c.LocalAddr().String()
	c.SetDeadline(time.Now().Add(world.WaitLimit))
	if _, err := io.Copy(c, world.Stream(seed, size)); err != nil {
		return local, fmt.Errorf("client %s: send: %w", local, err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return local, fmt.Errorf("client %s: half-close: %w", local, err)
	}
	got, err := world.Hash(c)
	if want := world.StreamSum(seed, size); err != nil || got != want {
		return local, fmt.Errorf("client %s: echo of %d bytes: got %d bytes, %v (or hash differs)", local, size, got.N, err)
	}
	return local, nil
}

// await receives from ch and fails t if nothing comes within
// world.WaitLimit.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(world.WaitLimit):
		t.Fatalf("waited %v for %s", world.WaitLimit, what)
		panic("unreachable")
	}
}

// closedLines waits for n access lines of connections that ended with end
// and returns their fields, each checked to have exactly the access keys
// and extra.
func closedLines(t *testing.T, r *relay, n int, end string, extra ...string) []map[string]any {
	t.Helper()
	lines := r.logs.WaitCount(t, n, `"message":"connection closed"`, `"end":"`+end+`"`)
	if len(lines) != n {
		t.Errorf("%d access lines with end=%s, want %d", len(lines), end, n)
	}
	fields := make([]map[string]any, len(lines))
	for i, line := range lines {
		fields[i] = world.CheckFields(t, line, append(append(extra, accessKeys...), "duration_ms")...)
	}
	return fields
}

// TestFrontManyShort: 500 short connections, 16 at a time, each with its
// own payload of 1 B to 40 KiB, come back whole; each has one access line
// with its exact byte counts, and the counters add up.
func TestFrontManyShort(t *testing.T) {
	checkFrontLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}})
	const conns, clients = 500, 16
	var (
		next  atomic.Int64
		mu    sync.Mutex
		sizes = map[string][]int64{} // client address -> payload sizes (a port may come again)
		total int64
	)
	errs := make(chan error, clients)
	for range clients {
		go func() {
			for i := next.Add(1); i <= conns; i = next.Add(1) {
				size := 1 + rand.New(rand.NewPCG(uint64(i), 1)).Int64N(40<<10)
				local, err := echoOnce(r.addr(0), uint64(i), size)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				sizes[local] = append(sizes[local], size)
				total += size
				mu.Unlock()
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range closedLines(t, r, conns, EndEOF) {
		client := f["client"].(string)
		in, out := int64(f["bytes_in"].(float64)), int64(f["bytes_out"].(float64))
		i := -1
		for j, size := range sizes[client] {
			if size == in && size == out {
				i = j
			}
		}
		if i < 0 || f["upstream"] != backend.Addr() || f["listen"] != r.addr(0) {
			t.Fatalf("access line of no client that sent that: %v (client sent %v)", f, sizes[client])
		}
		sizes[client] = append(sizes[client][:i], sizes[client][i+1:]...)
	}
	world.Eventually(t, "no connection active", func() bool { return r.Stats().Active.Load() == 0 })
	st := r.Stats()
	if st.Accepted.Load() != conns || st.BytesIn.Load() != uint64(total) || st.BytesOut.Load() != uint64(total) {
		t.Errorf("stats accepted=%d in=%d out=%d; want %d, %d, %d", st.Accepted.Load(),
			st.BytesIn.Load(), st.BytesOut.Load(), conns, total, total)
	}
	if n := backend.Accepted(); n != conns {
		t.Errorf("backend accepted %d, want %d", n, conns)
	}
}

// TestFrontUpstreamHalfClosesFirst: the upstream greets and half-closes;
// the client reads the greeting to EOF and only then sends 1 MiB, which
// the upstream receives whole before its EOF.
func TestFrontUpstreamHalfClosesFirst(t *testing.T) {
	checkFrontLeaks(t)
	const greeting, size = "ready\n", 1<<20 + 7
	got := make(chan world.Sum, 1)
	backend := world.NewBackend(t, func(c net.Conn) {
		io.WriteString(c, greeting)
		c.(*net.TCPConn).CloseWrite()
		s, err := world.Hash(c)
		if err != nil {
			s.N = -1
		}
		got <- s
	})
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}})
	c := r.dial(t, 0)
	c.SetDeadline(time.Now().Add(world.WaitLimit))
	if b, err := io.ReadAll(c); err != nil || string(b) != greeting {
		t.Fatalf("greeting %q, %v", b, err)
	}
	if _, err := io.Copy(c, world.Stream(5, size)); err != nil {
		t.Fatalf("send after the upstream's EOF: %v", err)
	}
	c.CloseWrite()
	if s, want := await(t, got, "the upstream's EOF"), world.StreamSum(5, size); s != want {
		t.Errorf("upstream got %d bytes, want %d (or hash differs)", s.N, want.N)
	}
	f := closedLines(t, r, 1, EndEOF)[0]
	if f["bytes_in"] != float64(size) || f["bytes_out"] != float64(len(greeting)) {
		t.Errorf("access line %v", f)
	}
}

// TestFrontDataWithFIN: a client that writes and closes at once, before
// the relay may even have dialled, still has every byte delivered, then
// EOF, whatever the size.
func TestFrontDataWithFIN(t *testing.T) {
	checkFrontLeaks(t)
	type received struct {
		sum world.Sum
		err error
	}
	got := make(chan received, 1)
	backend := world.NewBackend(t, func(c net.Conn) {
		s, err := world.Hash(c)
		got <- received{s, err}
	})
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}})
	for i, size := range []int64{1, 1000, 64<<10 + 1, 1 << 20} {
		c, err := net.Dial("tcp", r.addr(0))
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(c, world.Stream(uint64(i), size))
		c.Close()
		if err != nil {
			t.Fatalf("write %d bytes: %v", size, err)
		}
		g := await(t, got, fmt.Sprintf("the upstream's EOF after %d bytes", size))
		if want := world.StreamSum(uint64(i), size); g.err != nil || g.sum != want {
			t.Errorf("upstream got %d of %d bytes, %v (or hash differs)", g.sum.N, size, g.err)
		}
		r.logs.Wait(t, `"end":"eof"`, fmt.Sprintf(`"bytes_in":%d,"bytes_out":0,`, size))
	}
	closedLines(t, r, 4, EndEOF)
}

// TestFrontReset: a peer that resets the connection mid-stream ends it with
// end=reset and the bytes moved until then; the other peer is closed and
// sees what it sees today (checked), and nothing is left open.
func TestFrontReset(t *testing.T) {
	for _, tc := range []struct {
		name      string
		upstream  bool  // the upstream resets, else the client
		in, out   int64 // bytes before the reset
		otherSees error // what the peer that did not reset reads then
	}{
		{name: "upstream", upstream: true, in: 3, out: 100 << 10, otherSees: io.EOF},
		{name: "client", in: 200 << 10, out: 0, otherSees: io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkFrontLeaks(t)
			reset := make(chan struct{}) // the upstream resets, or has read the client's bytes
			seen := make(chan error, 1)  // what the upstream read after the client's reset
			backend := world.NewBackend(t, func(c net.Conn) {
				c.SetDeadline(time.Now().Add(world.WaitLimit))
				s, err := world.Hash(io.LimitReader(c, tc.in))
				if err != nil || s != world.StreamSum(1, tc.in) {
					seen <- fmt.Errorf("upstream read %d bytes, %v (or hash differs)", s.N, err)
					return
				}
				io.Copy(c, world.Stream(2, tc.out))
				if tc.upstream {
					select {
					case <-reset:
					case <-time.After(world.WaitLimit): // the test failed before
					}
					c.(*net.TCPConn).SetLinger(0)
					c.Close()
					return
				}
				close(reset)
				_, err = c.Read(make([]byte, 1))
				seen <- err
			})
			r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}})
			c := r.dial(t, 0)
			c.SetDeadline(time.Now().Add(world.WaitLimit))
			io.Copy(c, world.Stream(1, tc.in))
			if s, err := world.Hash(io.LimitReader(c, tc.out)); err != nil || s != world.StreamSum(2, tc.out) {
				t.Fatalf("client read %d of %d bytes, %v (or hash differs)", s.N, tc.out, err)
			}
			if tc.upstream {
				close(reset)
				if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, tc.otherSees) {
					t.Errorf("client read %d, %v after the upstream's reset; want %v", n, err, tc.otherSees)
				}
			} else {
				select {
				case <-reset:
				case err := <-seen:
					t.Fatal(err)
				case <-time.After(world.WaitLimit):
					t.Fatal("the upstream never read the client's bytes")
				}
				c.SetLinger(0)
				c.Close()
				if err := await(t, seen, "the upstream's read"); !errors.Is(err, tc.otherSees) {
					t.Errorf("upstream read %v after the client's reset; want %v", err, tc.otherSees)
				}
			}
			// The error says which call failed ("splice: connection reset
			// by peer" today); only the errno is held here.
			f := closedLines(t, r, 1, EndReset, "error")[0]
			if f["bytes_in"] != float64(tc.in) || f["bytes_out"] != float64(tc.out) ||
				!strings.HasSuffix(f["error"].(string), "connection reset by peer") {
				t.Errorf("access line %v", f)
			}
			world.Eventually(t, "no connection active", func() bool { return r.Stats().Active.Load() == 0 })
		})
	}
}

// TestFrontUnreachable: with a failover list of two closed ports and a
// good one the client reaches the good one (two dial failures); with a
// closed port only it reads a clean EOF, and nothing stays active.
func TestFrontUnreachable(t *testing.T) {
	checkFrontLeaks(t)
	good := world.NewBackend(t, world.Echo)
	dead1, dead2, dead3 := world.DeadAddr(t), world.DeadAddr(t), world.DeadAddr(t)
	r := startRelay(t, Config{Upstreams: [][]string{{dead1, dead2, good.Addr()}, {dead3}}})
	if _, err := echoOnce(r.addr(0), 1, 1000); err != nil {
		t.Fatal(err)
	}
	if f := closedLines(t, r, 1, EndEOF)[0]; f["upstream"] != good.Addr() || f["bytes_in"] != float64(1000) {
		t.Errorf("access line %v", f)
	}
	c := r.dial(t, 1)
	c.SetReadDeadline(time.Now().Add(world.WaitLimit))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("client of unreachable upstreams read %d, %v; want EOF", n, err)
	}
	line := r.logs.Wait(t, `"end":"upstream_unreachable"`, `"upstream":"`+dead3+`"`, `"level":"warn"`, "connection refused")
	world.CheckFields(t, line, "level", "listener", "listen", "client", "upstream", "duration_ms", "end", "error", "message")
	world.Eventually(t, "no connection active", func() bool { return r.Stats().Active.Load() == 0 })
	if st := r.Stats(); st.DialFailures.Load() != 3 || st.Accepted.Load() != 2 || st.Unreachable.Load() != 1 {
		t.Errorf("DialFailures %d, Accepted %d, Unreachable %d; want 3, 2, 1",
			st.DialFailures.Load(), st.Accepted.Load(), st.Unreachable.Load())
	}
}

// TestFrontSocketOptions: the relay's two sockets of a young connection
// carry what Go's net package and the listener give them today:
// TCP_NODELAY on both, the listen socket's keepalive on the client side,
// no keepalive yet on the upstream side (see TestLateKeepAlive).
func TestFrontSocketOptions(t *testing.T) {
	checkFrontLeaks(t)
	ups := make(chan net.Addr, 1)
	backend := world.NewBackend(t, func(c net.Conn) {
		ups <- c.RemoteAddr()
		world.Echo(c)
	})
	r := listenRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}})
	r.parkAfter = time.Hour
	r.serve(t)
	c := r.dial(t, 0)
	roundTrip(t, c, "x")
	nodelay := sockopt{"TCP_NODELAY", unix.IPPROTO_TCP, unix.TCP_NODELAY, 1}
	peer := c.LocalAddr().(*net.TCPAddr).AddrPort()
	checkSocket(t, "client side", func(fd int) bool { return sockAddr(unix.Getpeername(fd)) == peer }, []sockopt{
		nodelay,
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(keepAliveIdle / time.Second)},
		{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(keepAliveInterval / time.Second)},
	})
	local := (<-ups).(*net.TCPAddr).AddrPort()
	checkSocket(t, "upstream side", func(fd int) bool { return sockAddr(unix.Getsockname(fd)) == local }, []sockopt{
		nodelay,
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0},
	})
	c.Close()
	r.logs.Wait(t, `"end":"eof"`)
}
