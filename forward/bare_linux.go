package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Parking bare: when both directions of a pair between two plain TCP
// conns are parked, the pair gives its conns up and keeps only a
// duplicate of each socket's descriptor, registered in the parker's epoll
// set in place of the conns' own. Closing a net.TCPConn frees its netFD,
// its addresses and RawConn, and hands the socket's runtime poll
// descriptor back to the runtime's free list; the socket itself stays
// open through the duplicate, with its buffers, options (keepalive,
// TCP_USER_TIMEOUT) and state. When either socket becomes readable, or
// the pair is stopped, the pair is taken back (takeBare) and made whole
// again (restoreBare: net.FileConn on each descriptor), and both
// directions go on where they stopped. See the package doc for what it
// saves.
//
// Why the poll descriptors matter more than their size: the runtime
// never frees one, it only reuses it, so the most conns ever open at once
// decide how many stay resident. A pair parked bare holds none, and a
// burst of idle connections that park as they arrive (crowded) needs
// only as many as are running at once.
//
// The epoll registrations belong to the open socket, not to the
// descriptor number: a registration of the conn's descriptor would
// outlive its close (the duplicate keeps the socket open) and report
// events under a number that may be reused. So parkBare deletes them
// before closing the conns and registers the duplicates, and takeBare
// deletes the duplicates' before anything closes them.

// parkBare parks p bare; the caller owns both directions, both idle. It
// reports false when it changed nothing (a duplicate could not be made):
// the caller parks them as usual. True: p is parked bare, or handed to a
// fresh goroutine that runs it (the parker closed, or stop came first).
func (pk *parker) parkBare(p *pair) bool {
	// A direction parked just now may still be registering its conn's
	// descriptor; a registration made after the delete below would
	// outlive the conn.
	p.ab.settle()
	p.ba.settle()
	fa, err := dupFD(p.ab.srcRaw)
	if err != nil {
		p.bareOK.Store(false)
		return false
	}
	fb, err := dupFD(p.ba.srcRaw)
	if err != nil {
		unix.Close(fa)
		p.bareOK.Store(false)
		return false
	}
	for i := range p.dirs {
		if d := &p.dirs[i]; d.inEpoll {
			unix.EpollCtl(pk.epfd, unix.EPOLL_CTL_DEL, int(d.parkFD), nil)
			d.inEpoll = false
		}
	}
	p.mu.Lock()
	a, b := p.a, p.b
	p.a, p.b = nil, nil
	p.mu.Unlock()
	a.Close()
	b.Close()
	p.ab.src, p.ab.dst, p.ba.src, p.ba.dst = nil, nil, nil, nil
	p.setRaw(nil, nil)
	p.ab.parkFD, p.ba.parkFD = int32(fa), int32(fb)
	pk.holdBare(p)
	return true
}

// holdBare parks bare an owned pair whose conns are gone and whose
// parkFDs are its sockets' descriptors: both directions in the epoll set,
// level-triggered, so bytes that came before are reported at once. If the
// parker is closed or the pair stopped meanwhile, the pair runs on in a
// fresh goroutine instead.
func (pk *parker) holdBare(p *pair) {
	pk.mu.Lock()
	if pk.closed {
		pk.mu.Unlock()
		pk.resume(p)
		return
	}
	pk.startLocked()
	pk.parked.Add(2)
	pk.bare.Add(1)
	pk.bareParks.Add(1)
	p.ab.adding.Add(1) // the pair's registrations: see takeBare
	p.ab.state.Store(dirBare)
	p.ba.state.Store(dirBare)
	pk.indexLocked(p.ab)
	pk.indexLocked(p.ba)
	pk.armSweepLocked(max(p.idleLeft(), p.sweepGrain()))
	pk.parkedLocked()
	pk.mu.Unlock()
	errA := pk.register(int(p.ab.parkFD))
	errB := pk.register(int(p.ba.parkFD))
	p.ab.adding.Add(-1)
	if errA != nil || errB != nil {
		if pk.takeBare(p) {
			p.bareOK.Store(false) // epoll refuses more: do not try again
			pk.resume(p)
		}
		return
	}
	if p.stopped.Load() {
		// stop may have found the directions running, before the
		// state change: wake them here, unless it did.
		pk.wakeBare(p)
	}
}

// adopted is what the front hands the engine with a connection's
// descriptors (adoptBare).
type adopted struct {
	opt   PipeOptions // as for startPipe; the parker is the adopting one
	start time.Time   // when the client was accepted
	last  time.Time   // when bytes last moved, either way
	moved [2]int64    // bytes written a->b and b->a so far
}

// adoptBare takes over a connection the front served until now (fa the
// client's socket, fb the upstream's, both directions open, nothing
// pending) as a pair parked bare, as if both its directions had just
// parked: bytes already waiting wake it at once, and it goes on as any
// pair does, with its counts so far, its start for the access line and
// the idle timeout counted from its last bytes. end is called as
// startPipe's is.
func (pk *parker) adoptBare(ctx context.Context, fa, fb int, a adopted, end func(Result)) {
	opt := a.opt
	p := &pair{ctx: ctx, idle: opt.IdleTimeout, progress: opt.Progress, start: a.start, onEnd: end}
	p.parker, p.parkAfter = pk, opt.parkAfter
	p.grain = p.clockGrain()
	p.last.Store(int64(a.last.Sub(a.start)))
	p.ab = p.initDirection(&p.dirs[0], nil, nil, opt.AtoB, opt.Pool)
	p.ba = p.initDirection(&p.dirs[1], nil, nil, opt.BtoA, opt.Pool)
	p.ab.moved, p.ba.moved = a.moved[0], a.moved[1]
	p.ab.parkFD, p.ba.parkFD = int32(fa), int32(fb)
	p.bareOK.Store(true)
	p.stopWith(opt.live) // stopped already: holdBare wakes it to end with end=shutdown
	pk.holdBare(p)
}

// bareDue is how long until the sweep may park p bare, given how long it
// has been quiet: both directions parked as usual, quiet for parkAfter.
// ok is false for a pair the sweep leaves alone.
func (p *pair) bareDue(quiet time.Duration) (due time.Duration, ok bool) {
	if !p.bareOK.Load() || p.ab.state.Load() != dirParked || p.ba.state.Load() != dirParked {
		return 0, false
	}
	return p.parkAfter - quiet, true
}

// parkParkedBare parks bare a pair whose two directions are parked as
// usual, for the sweep; a direction woken meanwhile runs on.
func (pk *parker) parkParkedBare(p *pair) {
	if !pk.unpark(p.ab) {
		return
	}
	if !pk.unpark(p.ba) {
		pk.repark(p.ab)
		return
	}
	if !pk.parkBare(p) {
		pk.repark(p.ab)
		pk.repark(p.ba)
	}
}

// settle waits until the epoll_ctl of d's last park has returned. Whoever
// takes a parked direction over may find the goroutine that parked it
// still in that call; it must not delete the registration (and then
// close the descriptor) before the call lands. The wait is one syscall
// at most.
func (d *direction) settle() {
	for d.adding.Load() != 0 {
		runtime.Gosched()
	}
}

// register adds fd to the epoll set for one readiness report.
func (pk *parker) register(fd int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(fd)}
	if err := unix.EpollCtl(pk.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// wakeBare resumes a pair parked bare, unless someone else took it.
func (pk *parker) wakeBare(p *pair) {
	if pk.takeBare(p) {
		pk.resume(p)
	}
}

// takeBare takes a pair parked bare back; it reports whether the caller
// now owns both directions (and must resume the pair). The descriptors
// leave the epoll set here, while they are still open.
func (pk *parker) takeBare(p *pair) bool {
	if !p.ab.state.CompareAndSwap(dirBare, dirRunning) {
		return false
	}
	p.ba.state.Store(dirRunning)
	p.ab.settle() // parkBare may still be adding the descriptors
	pk.parked.Add(-2)
	pk.bare.Add(-1)
	pk.mu.Lock()
	pk.unindexLocked(p.ab)
	pk.unindexLocked(p.ba)
	closed := pk.closed // its epoll set may be gone, its number reused
	pk.mu.Unlock()
	if !closed {
		unix.EpollCtl(pk.epfd, unix.EPOLL_CTL_DEL, int(p.ab.parkFD), nil)
		unix.EpollCtl(pk.epfd, unix.EPOLL_CTL_DEL, int(p.ba.parkFD), nil)
	}
	return true
}

// resume runs an owned pair that was parked bare in a fresh goroutine.
func (pk *parker) resume(p *pair) {
	pk.running.Add(2)
	go p.resumeBare()
}

// resumeBare makes the pair's conns again and runs both directions, this
// goroutine the first; a pair stopped meanwhile ends without them, as it
// would have after waking from the poller. A pair whose conns cannot be
// made again (the process out of descriptors: FileConn needs one more
// for a moment) ends with end=error and the reason.
func (p *pair) resumeBare() {
	if !p.stopped.Load() {
		err := p.restoreBare()
		if err == nil {
			p.wokeBare = true
			go p.ba.runDetached()
			p.ab.runDetached()
			return
		}
		p.stop(EndError, fmt.Errorf("resume parked connection: %w", err))
	} else {
		unix.Close(int(p.ab.parkFD))
		unix.Close(int(p.ba.parkFD))
	}
	p.parker.running.Add(-2)
	p.ended.Store(2)
	p.onEnd(p.close())
}

// restoreBare makes the pair's conns again from its descriptors (which it
// closes, whatever happens) with the deadline of a direction going back to
// wait, and gives them to the directions.
func (p *pair) restoreBare() error {
	a, errA := fileConn(int(p.ab.parkFD))
	b, errB := fileConn(int(p.ba.parkFD))
	if err := errors.Join(errA, errB); err != nil {
		for _, c := range []net.Conn{a, b} {
			if c != nil {
				c.Close()
			}
		}
		return err
	}
	ra, errA := a.(syscall.Conn).SyscallConn()
	rb, errB := b.(syscall.Conn).SyscallConn()
	if err := errors.Join(errA, errB); err != nil {
		a.Close()
		b.Close()
		return err
	}
	deadline := time.Now().Add(p.wakeAfter(max(p.idleLeft(), 0)))
	setWaitDeadline(a, deadline)
	setWaitDeadline(b, deadline)
	p.ab.src, p.ab.dst, p.ba.src, p.ba.dst = a, b, b, a
	p.setRaw(ra, rb)
	p.mu.Lock()
	p.a, p.b = a, b
	p.mu.Unlock()
	if p.stopped.Load() {
		// stop ran and found no conns to wake.
		past := time.Unix(1, 0)
		a.SetDeadline(past)
		b.SetDeadline(past)
	}
	return nil
}

// dupFD duplicates the descriptor under rc (close-on-exec).
func dupFD(rc syscall.RawConn) (int, error) {
	fd, derr := -1, error(nil)
	err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return -1, os.NewSyscallError("fcntl", err)
	}
	return fd, nil
}

// fileConn makes a net.Conn of the socket fd and closes fd. The socket
// keeps its keepalive options: net.FileConn turns on Go's default
// keepalive (15 s), which would replace the relay's on an upstream and a
// device's short one (Raw.UserTimeout), so they are read before and put
// back after (TestBareParkKeepsSocketOptions).
func fileConn(fd int) (net.Conn, error) {
	ka, err := getKeepAlive(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Blocking, so that os.NewFile leaves it out of the poller (a poll
	// descriptor and two epoll calls spared); FileConn makes its own
	// copy, nonblocking again (the flag is the socket's, not the
	// descriptor's).
	unix.SetNonblock(fd, false)
	f := os.NewFile(uintptr(fd), "")
	defer f.Close()
	c, err := net.FileConn(f)
	if err == nil {
		err = ka.set(fd)
	}
	if err != nil {
		if c != nil {
			c.Close()
		}
		return nil, fmt.Errorf("descriptor %d: %w", fd, err)
	}
	return c, nil
}

// keepAlive is a socket's keepalive options, as getsockopt has them.
type keepAlive [4]int

// keepAliveOpts are the options of keepAlive, in order.
var keepAliveOpts = [4]struct{ level, opt int }{
	{unix.SOL_SOCKET, unix.SO_KEEPALIVE},
	{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
	{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
	{unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
}

func getKeepAlive(fd int) (keepAlive, error) {
	var ka keepAlive
	for i, o := range keepAliveOpts {
		v, err := unix.GetsockoptInt(fd, o.level, o.opt)
		if err != nil {
			return ka, os.NewSyscallError("getsockopt", err)
		}
		ka[i] = v
	}
	return ka, nil
}

// set puts the options back on fd (or on any descriptor of its socket).
func (ka keepAlive) set(fd int) error {
	for i, o := range keepAliveOpts {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, ka[i]); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
	}
	return nil
}
