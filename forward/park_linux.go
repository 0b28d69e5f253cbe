package forward

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// parker holds the idle directions of a listener's forwards without a
// goroutine each: a direction that has had nothing to read for parkAfter
// registers its source socket here (EPOLLIN, one-shot) and its goroutine
// exits; when the socket becomes readable (bytes, EOF or an error), the
// listener's one parker goroutine starts a fresh goroutine that resumes
// the direction where it stopped. See the package doc for why.
//
// The epoll set is itself pollable, so the parker goroutine waits for it
// in Go's netpoller like any socket (no thread blocked in epoll_wait), and
// closing it ends that goroutine.
//
// Who runs a parked direction: whoever moves its state from parked to
// running (unpark) owns it, and only one can; a spurious wake-up costs a
// read that finds nothing and a park again.
type parker struct {
	ep     *os.File // the epoll set; also what the parker goroutine waits on
	epfd   int
	parked atomic.Int64 // directions parked now, for tests and the bench

	mu   sync.Mutex // guards the following
	byFD map[int32]*direction
}

// Direction states: running (a goroutine owns it) or parked.
const (
	dirRunning int32 = iota
	dirParked
)

// errWouldPark leaves the direction's copy loop when its source has
// nothing to read and the pair has been idle for parkAfter.
var errWouldPark = errors.New("forward: direction idle, park it")

func newParker() (*parker, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// Nonblocking, so that os.NewFile hands the set to the netpoller.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	return &parker{ep: os.NewFile(uintptr(fd), "forward-parker"), epfd: fd, byFD: make(map[int32]*direction)}, nil
}

// park marks d parked and registers its source socket (d.parkFD),
// one-shot: readiness is reported once, then the registration sleeps until
// parked again. Level-triggered, so bytes that arrived before the call are
// reported at once. Every write to d comes before the state change: from
// then on d may run in another goroutine. On an error the caller must
// unpark d (and run it, if it gets it back).
func (pk *parker) park(d *direction) error {
	fd := int32(d.parkFD)
	registered := d.inEpoll
	d.inEpoll = true
	pk.parked.Add(1)
	d.state.Store(dirParked)
	pk.mu.Lock()
	pk.byFD[fd] = d
	pk.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: fd}
	var err error
	if registered {
		err = unix.EpollCtl(pk.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
	}
	if !registered || err == unix.ENOENT {
		err = unix.EpollCtl(pk.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	}
	if err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// unpark takes a parked direction back; it reports whether the caller
// now owns it (and must run it).
func (pk *parker) unpark(d *direction) bool {
	if !d.state.CompareAndSwap(dirParked, dirRunning) {
		return false
	}
	pk.parked.Add(-1)
	pk.mu.Lock()
	if pk.byFD[int32(d.parkFD)] == d {
		delete(pk.byFD, int32(d.parkFD))
	}
	pk.mu.Unlock()
	return true
}

// wake resumes a parked direction in a fresh goroutine, if it is parked.
func (pk *parker) wake(d *direction) {
	if pk.unpark(d) {
		go d.runDetached()
	}
}

// serve waits for readiness on the epoll set and resumes the directions
// whose sockets became readable, until close.
func (pk *parker) serve() {
	rc, err := pk.ep.SyscallConn()
	if err != nil {
		return
	}
	events := make([]unix.EpollEvent, 128)
	n := 0
	wait := func(uintptr) bool {
		var err error
		n, err = unix.EpollWait(pk.epfd, events, 0)
		if err != nil {
			n = 0 // EINTR: look again
		}
		return n > 0
	}
	for {
		if err := rc.Read(wait); err != nil {
			return // closed
		}
		for i := range n {
			pk.mu.Lock()
			d := pk.byFD[events[i].Fd]
			pk.mu.Unlock()
			if d != nil {
				pk.wake(d)
			}
		}
	}
}

// close ends serve. Call it once no forward can park any more.
func (pk *parker) close() error {
	if err := pk.ep.Close(); err != nil {
		return fmt.Errorf("close parker: %w", err)
	}
	return nil
}
