//go:build linux

package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
	"golang.org/x/sys/unix"
)

// parkedRelay starts a relay whose directions park as soon as they find
// nothing to read, with the given idle timeout.
func parkedRelay(t *testing.T, backend string, idle time.Duration) *relay {
	t.Helper()
	r := listenRelay(t, Config{Upstreams: [][]string{{backend}}, IdleTimeout: idle})
	if r.parker == nil {
		t.Fatal("listener has no parker")
	}
	r.parkAfter = 0
	r.serve(t)
	return r
}

// waitParked waits until n directions are parked and no goroutine of a
// pipe direction is left: a parked connection holds none.
func waitParked(t *testing.T, r *relay, n int64) {
	t.Helper()
	world.Eventually(t, fmt.Sprintf("%d directions parked", n), func() bool {
		return r.pool.Parked() == n && directionGoroutines() == 0
	})
}

// directionGoroutines counts the goroutines running a pipe direction.
func directionGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "forward.(*direction).runDetached")
}

// TestParkResume: an idle connection holds no goroutine; bytes sent to
// either side afterwards wake it, move intact, and are counted once.
func TestParkResume(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := parkedRelay(t, backend.Addr(), time.Minute)
	c := r.dial(t, 0)
	if got := roundTrip(t, c, "x"); got != "x" {
		t.Fatalf("echo %q", got)
	}
	waitParked(t, r, 2)
	const size = 1<<20 + 3 // past the small-read buffer: the resumed direction splices
	c.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		io.Copy(c, world.Stream(3, size))
	}()
	got, err := world.Hash(io.LimitReader(c, size))
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if want := world.StreamSum(3, size); got != want {
		t.Fatalf("echo %d bytes, want %d (or hash differs)", got.N, want.N)
	}
	waitParked(t, r, 2)
	c.Close()
	r.logs.Wait(t, `"end":"eof"`, fmt.Sprintf(`"bytes_in":%d`, size+1), fmt.Sprintf(`"bytes_out":%d`, size+1))
	world.Eventually(t, "nothing parked", func() bool { return r.pool.Parked() == 0 })
}

// TestParkIdleTimeout: a connection whose directions are both parked still
// ends at the idle timeout, with its access line.
func TestParkIdleTimeout(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	const idle = 300 * time.Millisecond
	r := parkedRelay(t, backend.Addr(), idle)
	c := r.dial(t, 0)
	start := time.Now()
	roundTrip(t, c, "x")
	waitParked(t, r, 2)
	expectClosed(t, c, 5*time.Second)
	if took := time.Since(start); took < idle-idle/8 {
		t.Errorf("closed after %v, idle timeout is %v", took, idle)
	}
	r.logs.Wait(t, `"end":"idle"`, `"bytes_in":1`, `"bytes_out":1`)
	if n := r.pool.Parked(); n != 0 {
		t.Errorf("%d directions still parked", n)
	}
}

// TestParkHalfClose: the client half-closes while both directions are
// parked; the backend reads EOF, answers, and the answer reaches the
// client whole before its EOF.
func TestParkHalfClose(t *testing.T) {
	checkLeaks(t)
	const replySize = 1<<20 + 5
	request := make(chan string, 1)
	backend := world.NewBackend(t, func(c net.Conn) {
		one := make([]byte, 1)
		io.ReadFull(c, one)
		c.Write(one)
		rest, _ := io.ReadAll(c)
		request <- string(one) + string(rest)
		io.Copy(c, world.Stream(9, replySize))
	})
	r := parkedRelay(t, backend.Addr(), time.Minute)
	c := r.dial(t, 0)
	roundTrip(t, c, "p")
	waitParked(t, r, 2)
	io.WriteString(c, "rint this")
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	reply, err := world.Hash(c)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	if got := <-request; got != "print this" {
		t.Errorf("backend read %q", got)
	}
	if want := world.StreamSum(9, replySize); reply != want {
		t.Errorf("reply %d bytes, want %d (or hash differs)", reply.N, want.N)
	}
	r.logs.Wait(t, `"end":"eof"`, `"bytes_in":10`, fmt.Sprintf(`"bytes_out":%d`, replySize+1))
}

// TestParkShutdown: Shutdown past its grace ends parked connections (end
// shutdown) and returns with every goroutine gone; so does Close.
func TestParkShutdown(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := parkedRelay(t, backend.Addr(), time.Minute)
	c1, c2 := r.dial(t, 0), r.dial(t, 0)
	roundTrip(t, c1, "1")
	roundTrip(t, c2, "2")
	waitParked(t, r, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := r.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want deadline exceeded", err)
	}
	expectClosed(t, c1, 5*time.Second)
	expectClosed(t, c2, 5*time.Second)
	if n := r.logs.Count(`"end":"shutdown"`); n != 2 {
		t.Errorf("%d access lines with end shutdown, want 2:\n%s", n, r.logs.String())
	}
	if n := r.pool.Parked(); n != 0 {
		t.Errorf("%d directions still parked", n)
	}
}

// TestParkManyShortConnections: connections that park and resume many
// times, in parallel, each get exactly their bytes back.
func TestParkManyShortConnections(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := parkedRelay(t, backend.Addr(), time.Minute)
	const conns, rounds = 20, 30
	errs := make(chan error, conns)
	for i := range conns {
		c := r.dial(t, 0)
		go func() {
			c.SetDeadline(time.Now().Add(20 * time.Second))
			for j := range rounds {
				msg := fmt.Sprintf("c%d-r%d;", i, j)
				if _, err := io.WriteString(c, msg); err != nil {
					errs <- err
					return
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
					errs <- fmt.Errorf("conn %d round %d: got %q, %v", i, j, got, err)
					return
				}
			}
			c.Close()
			errs <- nil
		}()
	}
	for range conns {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	r.logs.WaitCount(t, conns, `"end":"eof"`)
	world.Eventually(t, "nothing parked", func() bool { return r.pool.Parked() == 0 })
}

// TestLateKeepAlive: the upstream of a connection younger than parkAfter
// has no keepalive (three setsockopt calls spared); once the connection
// parks, it has the relay's keepalive.
func TestLateKeepAlive(t *testing.T) {
	checkLeaks(t)
	ups := make(chan netip.AddrPort, 2)
	backend := world.NewBackend(t, func(c net.Conn) {
		ups <- c.RemoteAddr().(*net.TCPAddr).AddrPort()
		world.Echo(c)
	})
	young := listenRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}})
	young.parkAfter = time.Hour
	young.serve(t)
	yc := young.dial(t, 0)
	roundTrip(t, yc, "y")
	if on, idle := upstreamSocketKeepAlive(t, <-ups); on != 0 {
		t.Errorf("young connection: SO_KEEPALIVE %d (idle %d), want off", on, idle)
	}
	yc.Close()
	young.logs.Wait(t, `"end":"eof"`) // its directions are gone: waitParked counts them
	old := parkedRelay(t, backend.Addr(), time.Minute)
	roundTrip(t, old.dial(t, 0), "o")
	waitParked(t, old, 2)
	if on, idle := upstreamSocketKeepAlive(t, <-ups); on != 1 || idle != int(keepAliveIdle/time.Second) {
		t.Errorf("parked connection: SO_KEEPALIVE %d, TCP_KEEPIDLE %d; want 1, %d", on, idle, int(keepAliveIdle/time.Second))
	}
}

// upstreamSocketKeepAlive finds this process's socket bound to local (the
// relay's end of an upstream connection) and reads its keepalive options.
func upstreamSocketKeepAlive(t *testing.T, local netip.AddrPort) (on, idle int) {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		sa, err := unix.Getsockname(fd)
		in4, ok := sa.(*unix.SockaddrInet4)
		if err != nil || !ok || in4.Port != int(local.Port()) || netip.AddrFrom4(in4.Addr) != local.Addr() {
			continue
		}
		on, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		idle, _ = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		return on, idle
	}
	t.Fatalf("no socket bound to %v", local)
	return 0, 0
}
