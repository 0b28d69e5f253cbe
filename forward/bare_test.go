//go:build linux

package forward

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
	"golang.org/x/sys/unix"
)

// waitBare waits until n pairs are parked bare: both their directions
// parked, no goroutine, and the conns given up for two descriptors; the
// parker's epoll set then holds those descriptors and nothing else.
func waitBare(t *testing.T, r *relay, n int64) {
	t.Helper()
	world.Eventually(t, fmt.Sprintf("%d pairs parked bare", n), func() bool {
		return r.parker.bare.Load() == n && r.pool.Parked() == 2*n && directionGoroutines() == 0
	})
	if got := registrations(t, r.parker); got != int(2*n) {
		t.Errorf("%d descriptors in the parker's epoll set, want %d", got, 2*n)
	}
}

// registrations counts the parker's epoll registrations, and fails t for
// one whose descriptor number no longer names the socket registered (a
// conn closed while its registration stayed: the socket lives on through
// a duplicate, and the number may be anyone's).
func registrations(t *testing.T, pk *parker) int {
	t.Helper()
	info, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", pk.epfd))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(info), "\n") {
		var fd, events int
		var data, ino uint64
		if _, err := fmt.Sscanf(line, "tfd: %d events: %x data: %x pos:0 ino:%x", &fd, &events, &data, &ino); err != nil {
			continue
		}
		n++
		if link, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); link != fmt.Sprintf("socket:[%d]", ino) {
			t.Errorf("epoll registration of descriptor %d is for socket %d, the descriptor is %q", fd, ino, link)
		}
	}
	return n
}

// openSockets counts this process's open socket descriptors. Pipes are
// left out: the backends' io.Copy splices through pipes that Go caches
// until a GC.
func openSockets(t *testing.T) int {
	n := 0
	eachSocket(t, func(int) { n++ })
	return n
}

// eachSocket calls f with every socket descriptor of this process.
func eachSocket(t *testing.T, f func(fd int)) {
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
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(link, "socket:") {
			f(fd)
		}
	}
}

// TestBareParkResume: a pair parked bare wakes from either side, carries
// a stream each way intact (SHA-256), parks bare again, and its access
// line counts every byte once.
func TestBareParkResume(t *testing.T) {
	checkLeaks(t)
	const fromServer, fromClient = 256<<10 + 7, 1<<20 + 3
	send := make(chan struct{})
	backend := world.NewBackend(t, func(c net.Conn) {
		one := make([]byte, 1)
		if _, err := io.ReadFull(c, one); err != nil {
			return
		}
		c.Write(one)
		select {
		case <-send: // the upstream speaks first after the park
		case <-time.After(world.WaitLimit):
			return
		}
		if _, err := io.Copy(c, world.Stream(11, fromServer)); err != nil {
			return
		}
		world.Echo(c)
	})
	r := parkedRelay(t, backend.Addr(), time.Minute)
	c := r.dial(t, 0)
	if got := roundTrip(t, c, "x"); got != "x" {
		t.Fatalf("echo %q", got)
	}
	waitBare(t, r, 1)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	close(send)
	got, err := world.Hash(io.LimitReader(c, fromServer))
	if err != nil || got != world.StreamSum(11, fromServer) {
		t.Fatalf("upstream's bytes after the park: %d, %v (or hash differs)", got.N, err)
	}
	waitBare(t, r, 1)
	go io.Copy(c, world.Stream(3, fromClient))
	got, err = world.Hash(io.LimitReader(c, fromClient))
	if err != nil || got != world.StreamSum(3, fromClient) {
		t.Fatalf("echo of the client's bytes after the park: %d, %v (or hash differs)", got.N, err)
	}
	waitBare(t, r, 1)
	c.Close()
	r.logs.Wait(t, `"end":"eof"`, fmt.Sprintf(`"bytes_in":%d`, fromClient+1),
		fmt.Sprintf(`"bytes_out":%d`, fromServer+fromClient+1))
	world.Eventually(t, "nothing parked", func() bool { return r.pool.Parked() == 0 && r.parker.bare.Load() == 0 })
}

// TestBareParkHalfClose: the client half-closes a pair parked bare; the
// backend reads the request and EOF, and its answer reaches the client
// whole before the client's EOF.
func TestBareParkHalfClose(t *testing.T) {
	halfCloseParked(t, func(r *relay) { waitBare(t, r, 1) })
}

// TestBareParkIdleTimeout: a pair parked bare still ends at the idle
// timeout, with its access line, and gives its descriptors back.
func TestBareParkIdleTimeout(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	const idle = 400 * time.Millisecond
	r := parkedRelay(t, backend.Addr(), idle)
	fds0 := openSockets(t)
	c := r.dial(t, 0)
	start := time.Now()
	roundTrip(t, c, "xy")
	waitBare(t, r, 1)
	expectClosed(t, c, 5*time.Second)
	if took := time.Since(start); took < idle-idle/8 {
		t.Errorf("closed after %v, idle timeout is %v", took, idle)
	}
	r.logs.Wait(t, `"end":"idle"`, `"bytes_in":2`, `"bytes_out":2`)
	c.Close()
	world.Eventually(t, "sockets back", func() bool { return openSockets(t) == fds0 })
	if n := r.pool.Parked(); n != 0 {
		t.Errorf("%d directions still parked", n)
	}
}

// TestBareParkShutdown: a pair parked bare holds two descriptors in the
// relay (the conns' own are closed); Shutdown past its grace ends such
// pairs with end=shutdown and their byte counts, and every descriptor
// and goroutine is gone after.
func TestBareParkShutdown(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := parkedRelay(t, backend.Addr(), time.Minute)
	fds0 := openSockets(t)
	c1, c2 := r.dial(t, 0), r.dial(t, 0)
	roundTrip(t, c1, "1")
	roundTrip(t, c2, "22")
	waitBare(t, r, 2)
	// Per connection: the client's end, the backend's end and the
	// relay's two descriptors; a third or fourth would be a conn kept.
	if got := openSockets(t) - fds0; got != 2*4 {
		t.Errorf("%d sockets for 2 connections parked bare, want 8", got)
	}
	shutdownPastGrace(t, r, c1, c2)
	r.logs.Wait(t, `"end":"shutdown"`, `"bytes_in":1`, `"bytes_out":1`)
	r.logs.Wait(t, `"end":"shutdown"`, `"bytes_in":2`, `"bytes_out":2`)
	c1.Close()
	c2.Close()
	// Back to where they were, less the listen socket Shutdown closed
	// (and the front's duplicate of it).
	world.Eventually(t, "sockets back", func() bool { return openSockets(t) == fds0-r.listenSockets() })
	if n, b := r.pool.Parked(), r.parker.bare.Load(); n != 0 || b != 0 {
		t.Errorf("%d directions, %d pairs still parked", n, b)
	}
}

// TestBareParkKeepsSocketOptions: waking from a bare park makes the conns
// again with net.FileConn, which turns on Go's default keepalive; the
// sockets must keep theirs: a raw device's short keepalive and
// TCP_USER_TIMEOUT, the client side's from the listen socket.
func TestBareParkKeepsSocketOptions(t *testing.T) {
	checkLeaks(t)
	ups := make(chan netip.AddrPort, 1)
	backend := world.NewBackend(t, func(c net.Conn) {
		ups <- c.RemoteAddr().(*net.TCPAddr).AddrPort()
		world.Echo(c)
	})
	r := listenRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}, IdleTimeout: time.Minute,
		Raw: &Raw{UserTimeout: 9 * time.Second}})
	r.parkAfter = 0
	r.serve(t)
	c := r.dial(t, 0)
	roundTrip(t, c, "a")
	waitBare(t, r, 1)
	roundTrip(t, c, "b") // wakes it: the conns are made again
	waitBare(t, r, 1)
	roundTrip(t, c, "c")
	waitBare(t, r, 1) // one descriptor per socket, the options set at the last wake
	device := []sockopt{
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 9},
		{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 3},
		{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 3},
		{"TCP_USER_TIMEOUT", unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 9000},
	}
	local := <-ups
	checkSocket(t, "device side", func(fd int) bool { return sockAddr(unix.Getsockname(fd)) == local }, device)
	client := []sockopt{
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(keepAliveIdle / time.Second)},
		{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(keepAliveInterval / time.Second)},
	}
	peer := c.LocalAddr().(*net.TCPAddr).AddrPort()
	checkSocket(t, "client side", func(fd int) bool { return sockAddr(unix.Getpeername(fd)) == peer }, client)
	c.Close()
	r.logs.Wait(t, `"raw job done"`, `"end":"eof"`, `"bytes_in":3`, `"bytes_out":3`)
}

// checkSocket finds the one descriptor of this process that match picks
// and checks its options.
func checkSocket(t *testing.T, what string, match func(fd int) bool, opts []sockopt) {
	t.Helper()
	found := 0
	eachSocket(t, func(fd int) {
		if !match(fd) {
			return
		}
		found++
		for _, o := range opts {
			if v, err := unix.GetsockoptInt(fd, o.level, o.opt); err != nil || v != o.want {
				t.Errorf("%s: %s = %d, %v; want %d", what, o.name, v, err, o.want)
			}
		}
	})
	if found != 1 {
		t.Errorf("%s: %d sockets found, want 1", what, found)
	}
}

// sockAddr is a getsockname or getpeername result as an AddrPort.
func sockAddr(sa unix.Sockaddr, err error) netip.AddrPort {
	in4, ok := sa.(*unix.SockaddrInet4)
	if err != nil || !ok {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port))
}

// TestBareParkCrowdedOnce: a crowded parker parks a young pair bare (at
// the latest once both directions wait after the first exchange); once
// it has woken from that, it parks as usual, with no bare wake per
// exchange, until it has been quiet for parkAfter.
func TestBareParkCrowdedOnce(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := listenRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}, IdleTimeout: time.Minute})
	r.parkAfter = time.Hour
	r.engineOnly() // a young connection parks crowded in the engine only
	r.serve(t)
	r.parker.crowdAt.Store(0) // every running direction is one too many
	c := r.dial(t, 0)
	parked := func() bool { return r.pool.Parked() == 2 && directionGoroutines() == 0 }
	roundTrip(t, c, "1")
	// Parked bare now, or woken from it already by the echo.
	world.Eventually(t, "both directions parked", parked)
	for i := range 3 {
		if got := roundTrip(t, c, "23"); got != "23" {
			t.Fatalf("exchange %d: echo %q", i, got)
		}
		world.Eventually(t, "both directions parked", parked)
		if n := r.parker.bare.Load(); n != 0 {
			t.Fatalf("exchange %d: the pair parked bare again, young and woken before", i)
		}
	}
	c.Close()
	r.logs.Wait(t, `"end":"eof"`, `"bytes_in":7`, `"bytes_out":7`)
}

// TestBareParkSweep: a pair that woke from its crowded bare park and
// parked as usual is parked bare by the sweep once it has been quiet for
// parkAfter, and still carries bytes after.
func TestBareParkSweep(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := listenRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}, IdleTimeout: 10 * time.Second})
	r.parkAfter = 300 * time.Millisecond
	r.serve(t)
	r.parker.crowdAt.Store(0)
	c := r.dial(t, 0)
	for _, msg := range []string{"1", "23", "456"} {
		if got := roundTrip(t, c, msg); got != msg {
			t.Fatalf("echo %q, want %q", got, msg)
		}
	}
	waitBare(t, r, 1)
	if got := roundTrip(t, c, "7890"); got != "7890" {
		t.Fatalf("echo after the sweep's park %q", got)
	}
	c.Close()
	r.logs.Wait(t, `"end":"eof"`, `"bytes_in":10`, `"bytes_out":10`)
}
