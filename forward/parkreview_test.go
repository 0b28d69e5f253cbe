//go:build linux

package forward

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestParkAfterParkerClosed: a direction that finds nothing to read after
// its parker closed was never parked (park refuses at once), so it must
// wait in the poller as parker.close promises, not end its goroutine: the
// pair still carries bytes both ways and ends, with end called once, when
// the peers close.
func TestParkAfterParkerClosed(t *testing.T) {
	checkLeaks(t)
	pool := NewPool(0)
	pk := pool.parker()
	if pk == nil {
		t.Skip("no parker on this system")
	}
	a, ra := tcpPair(t) // a: the client; ra: the relay's end of it
	rb, b := tcpPair(t) // rb: the relay's end to the upstream; b: the upstream
	pool.Close()        // the parker is closed before anything parks
	ended := make(chan Result, 2)
	startPipe(context.Background(), ra, rb, PipeOptions{
		IdleTimeout: time.Minute, Pool: pool, parker: pk, parkAfter: 0,
	}, func(res Result) { ended <- res }, false)

	deadline := time.Now().Add(10 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	buf := make([]byte, 3)
	for i := range 3 { // each round: both directions idle, then woken by bytes
		if _, err := a.Write([]byte("abc")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(b, buf); err != nil {
			t.Fatalf("round %d: upstream read: %v", i, err)
		}
		if _, err := b.Write([]byte("xyz")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(a, buf); err != nil {
			t.Fatalf("round %d: client read: %v", i, err)
		}
		time.Sleep(10 * time.Millisecond) // let both directions find nothing to read
	}
	a.CloseWrite()
	b.CloseWrite()
	select {
	case res := <-ended:
		if res.End != EndEOF || res.AtoB != 9 || res.BtoA != 9 {
			t.Errorf("result %+v, want eof with 9 bytes each way", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the pair never ended: a direction that could not park was dropped")
	}
	if n := pk.parked.Load(); n != 0 {
		t.Errorf("%d directions counted parked", n)
	}
}

// TestCloseWaitsForParkRegistration: a pair stopped while one of its
// directions is between being marked parked and its epoll_ctl
// (parker.park) keeps its sockets open until that call has landed.
// Closed sooner, the descriptor number can go to a new socket first, and
// the late call registers that socket with the parker for nobody: the
// first park of a connection on that number then fails (EEXIST) and its
// direction never parks.
func TestCloseWaitsForParkRegistration(t *testing.T) {
	checkLeaks(t)
	pool := NewPool(0)
	defer pool.Close()
	pk := pool.parker()
	if pk == nil {
		t.Skip("no parker on this system")
	}
	pk.noBare = true // the plain park only: a bare one would take the parked direction over
	spare, _ := tcpPair(t)
	spareFD := connFD(t, spare)
	_, ra := tcpPair(t)
	rb, _ := tcpPair(t)

	// The fix holds close back until the hook returns, so the hook can
	// only wait a while for an end that must not come.
	const holdWindow = 200 * time.Millisecond
	var res Result
	ended := make(chan struct{})
	var first atomic.Bool
	window := make(chan struct{}) // closed when the first park's hook returns
	var parked *direction
	fd, reused, closedEarly := -1, -1, false
	pk.parking = func(d *direction) {
		if !first.CompareAndSwap(false, true) {
			return
		}
		defer close(window)
		parked, fd = d, int(d.parkFD)
		d.p.stop(EndShutdown, nil) // takes d over, ends the pair
		select {
		case <-ended:
			closedEarly = true
			reused, _ = unix.FcntlInt(uintptr(spareFD), unix.F_DUPFD_CLOEXEC, fd)
		case <-time.After(holdWindow):
		}
	}
	startPipe(context.Background(), ra, rb, PipeOptions{
		IdleTimeout: time.Minute, Pool: pool, parker: pk, parkAfter: 0,
	}, func(r Result) { res = r; close(ended) }, false)

	<-window
	parked.settle() // its epoll_ctl has landed
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the pair never ended")
	}
	if closedEarly {
		t.Errorf("the pair closed its sockets while a direction's epoll_ctl on descriptor %d was pending", fd)
	}
	if reused < 0 {
		reused, _ = unix.FcntlInt(uintptr(spareFD), unix.F_DUPFD_CLOEXEC, fd)
	}
	defer unix.Close(reused)
	if reused != fd {
		t.Fatalf("descriptor %d was taken before the test could put a socket on it (got %d)", fd, reused)
	}
	if n := registrations(t, pk); n != 0 {
		t.Errorf("%d registrations in the parker's epoll set after the pair ended, want 0", n)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(fd)}
	if err := unix.EpollCtl(pk.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		t.Errorf("a new socket on descriptor %d cannot park: epoll_ctl add: %v", fd, err)
	} else {
		unix.EpollCtl(pk.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
	if res.End != EndShutdown {
		t.Errorf("end %q, want shutdown", res.End)
	}
	if n := pk.parked.Load(); n != 0 {
		t.Errorf("%d directions counted parked", n)
	}
}

// connFD is c's descriptor number (c keeps it open).
func connFD(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	rc.Control(func(s uintptr) { fd = int(s) })
	return fd
}
