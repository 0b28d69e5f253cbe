package forward

import (
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/edgerelay/relay/upstream"
)

// fconn is a connection in the front. Side 0 is the client, side 1 the
// upstream; the fields follow the engine's pair where they mean the same.
type fconn struct {
	ln       *frontListen
	fd       [2]int // -1: not open
	gen      uint32 // epoll data beside the descriptor (see run)
	client   netip.AddrPort
	start    time.Time // accepted
	last     time.Time // bytes last moved, either way
	deadline time.Time // of the connect under way
	cur      upstream.Cursor
	target   *upstream.Target // being dialled, then connected
	failed   []error          // dial errors of this connection so far
	pend     [2][]byte        // read from side i, not yet written to the other
	moved    [2]int64         // bytes written from side i to the other
	q        *fqueue
	prev     *fconn
	next     *fconn

	connected bool
	bulk      bool    // a read filled the buffer: the engine should move it
	ready     [2]bool // side i may have bytes or EOF not read yet
	rdhup     [2]bool // side i reported a hang-up: read on to EOF
	eof       [2]bool
}

var frontOne int32 = 1

// open starts the forward of an admitted client: its upstream dial.
func (f *front) open(ln *frontListen, fd int, client netip.AddrPort) {
	c := f.get()
	if f.gen++; f.gen == 0 {
		f.gen = 1
	}
	c.gen = f.gen
	c.ln, c.client, c.start, c.last = ln, client, f.now, f.now
	c.fd = [2]int{fd, -1}
	c.cur = ln.g.l.ups.Begin(ln.index)
	f.set(fd, c) // TCP_NODELAY came with accept (frontSockets)
	if err := f.watch(c, fd); err != nil {
		f.set(fd, nil)
		rawClose(fd)
		ln.g.l.logDialFailure(client, ln.index, err, c.start)
		ln.g.l.connDone(client)
		f.put(c)
		return
	}
	ln.g.young.push(c)
	f.dial(c)
}

// handle is a readiness report for side's socket.
func (f *front) handle(c *fconn, fd int, events uint32) {
	side := 0
	if fd == c.fd[1] {
		side = 1
	}
	if side == 1 && !c.connected {
		if events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			f.dialFailed(c, soError(fd))
			return
		}
		if events&unix.EPOLLOUT == 0 {
			return
		}
		if !f.connected(c) {
			return
		}
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.ready[side] = true
		if events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			c.rdhup[side] = true
		}
	}
	if events&unix.EPOLLOUT != 0 && !f.flush(c, 1-side) {
		return
	}
	if c.ready[side] && !f.pump(c, side) {
		return
	}
	if c.ready[1-side] && c.q != nil {
		// The other side's bytes may have waited for the connect or
		// for room.
		f.pump(c, 1-side)
	}
}

// connected records a finished connect; false when the connection went
// on to the engine.
func (f *front) connected(c *fconn) bool {
	c.connected = true
	c.ln.g.dialling--
	c.cur.Worked()
	if c.ln.g.l.parkAfter <= 0 {
		f.handoff(c)
		return false
	}
	return true
}

// pump moves bytes from side s to the other side until s has nothing more
// for now, the other side is full, or s ends. False: the connection ended
// or left the front.
func (f *front) pump(c *fconn, s int) bool {
	if c.eof[s] || len(c.pend[s]) > 0 || !c.connected {
		return true
	}
	d := 1 - s
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(c.fd[s]), uintptr(unsafe.Pointer(&f.buf[0])), uintptr(len(f.buf)))
		switch e {
		case 0:
		case syscall.EAGAIN:
			c.ready[s] = false
			return true
		case syscall.EINTR:
			continue
		default:
			f.fail(c, os.NewSyscallError("read", e))
			return false
		}
		if n == 0 {
			c.ready[s], c.eof[s] = false, true
			return f.ended(c, s)
		}
		w, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(c.fd[d]), uintptr(unsafe.Pointer(&f.buf[0])), n)
		if e == syscall.EAGAIN {
			w, e = 0, 0
		}
		if e != 0 {
			f.fail(c, os.NewSyscallError("write", e))
			return false
		}
		f.account(c, s, int(w))
		full := int(n) == len(f.buf)
		if full {
			c.bulk = true
		}
		if int(w) < int(n) {
			c.pend[s] = append(make([]byte, 0, int(n)-int(w)), f.buf[w:n]...)
			return true
		}
		if full {
			if f.toEngine(c) {
				return false
			}
			continue // kept here (half-closed): read on to EAGAIN
		}
		if !c.rdhup[s] {
			// A short read drained the socket: the next bytes or the
			// FIN raise a new edge.
			c.ready[s] = false
			return true
		}
	}
}

// flush writes what waits from side s; false when the connection ended or
// left the front.
func (f *front) flush(c *fconn, s int) bool {
	p := c.pend[s]
	if len(p) == 0 || !c.connected {
		return true
	}
	w, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(c.fd[1-s]), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e == syscall.EAGAIN {
		return true
	}
	if e != 0 {
		f.fail(c, os.NewSyscallError("write", e))
		return false
	}
	f.account(c, s, int(w))
	if c.pend[s] = p[w:]; len(c.pend[s]) > 0 {
		return true
	}
	c.pend[s] = nil
	if c.eof[s] {
		return f.ended(c, s)
	}
	if c.bulk && f.toEngine(c) {
		return false
	}
	return !c.ready[s] || f.pump(c, s)
}

// account counts n bytes written from side s, as the engine does per
// chunk.
func (f *front) account(c *fconn, s, n int) {
	if n <= 0 {
		return
	}
	c.moved[s] += int64(n)
	c.last = f.now
	st := &c.ln.g.l.stats
	if s == 0 {
		st.BytesIn.Add(uint64(n))
	} else {
		st.BytesOut.Add(uint64(n))
	}
}

// ended passes side s's EOF on once all it sent is written: a half-close
// of the other side, or the end of the connection when both sides are
// done. False when the connection ended.
func (f *front) ended(c *fconn, s int) bool {
	if len(c.pend[s]) > 0 {
		return true
	}
	if c.eof[1-s] && len(c.pend[1-s]) == 0 {
		f.finish(c, EndEOF, nil)
		return false
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SHUTDOWN, uintptr(c.fd[1-s]), syscall.SHUT_WR, 0); e != 0 {
		f.fail(c, os.NewSyscallError("shutdown", e))
		return false
	}
	return true
}

// fail ends the connection for an I/O error, named as the engine names it.
func (f *front) fail(c *fconn, err error) {
	if c.ln.g.l.ctx.Err() != nil {
		f.finish(c, EndShutdown, nil)
		return
	}
	f.finish(c, classify(err), err)
}

// finish closes a connection and writes its access line.
func (f *front) finish(c *fconn, end string, err error) {
	l := c.ln.g.l
	if !c.connected {
		f.unreachable(c, l.ctx.Err())
		return
	}
	f.release(c)
	c.record().end(Result{AtoB: c.moved[0], BtoA: c.moved[1], End: end, Err: err})
	f.put(c)
}

// record is what the access line of c needs, as the engine keeps it.
func (c *fconn) record() *forwarded {
	l := c.ln.g.l
	return &forwarded{l: l, listen: l.listens[c.ln.index], client: c.client, target: c.target, start: c.start}
}

// release takes c out of the loop and closes its sockets.
func (f *front) release(c *fconn) {
	if c.q != nil {
		c.q.remove(c)
	}
	if !c.connected && c.fd[1] >= 0 {
		c.ln.g.dialling--
	}
	for _, fd := range c.fd {
		if fd >= 0 {
			f.set(fd, nil)
			rawClose(fd)
		}
	}
}

// aged is a connection that reached parkAfter: to the engine if it can
// go, else kept here.
func (f *front) aged(c *fconn) {
	if !f.toEngine(c) {
		c.ln.g.kept.push(c)
		setUpstreamKeepAlive(c)
	}
}

// recheck looks at a kept connection: its idle timeout, and whether it
// may go to the engine now.
func (f *front) recheck(c *fconn) {
	if c.connected && f.now.Sub(c.last) >= c.ln.g.l.cfg.idleTimeout() {
		f.finish(c, EndIdle, nil)
		return
	}
	f.toEngine(c)
}

// toEngine hands a connection whose bytes are all written and whose
// directions both run to the engine, parked bare (see the file comment of
// front_linux.go); it reports whether it did. Others stay: a connect under
// way, a half-closed connection (the engine's bare pair takes two open
// directions), bytes waiting for room.
func (f *front) toEngine(c *fconn) bool {
	if !c.connected || c.eof[0] || c.eof[1] || len(c.pend[0]) > 0 || len(c.pend[1]) > 0 {
		return false
	}
	f.handoff(c)
	return true
}

// handoff moves c to the engine.
func (f *front) handoff(c *fconn) {
	l := c.ln.g.l
	if c.q != nil {
		c.q.remove(c)
	}
	for _, fd := range c.fd {
		rawEpollCtl(f.epfd, unix.EPOLL_CTL_DEL, fd, nil)
		f.set(fd, nil)
	}
	setUpstreamKeepAlive(c)
	fc := c.record()
	l.parker.adoptBare(l.ctx, c.fd[0], c.fd[1], adopted{
		opt: PipeOptions{
			IdleTimeout: l.cfg.idleTimeout(),
			AtoB:        &l.stats.BytesIn,
			BtoA:        &l.stats.BytesOut,
			Pool:        l.pool,
			parkAfter:   l.parkAfter,
			live:        &l.live,
		},
		start: c.start,
		last:  c.last,
		moved: c.moved,
	}, fc.end)
	f.put(c)
}

// setUpstreamKeepAlive turns on the upstream's keepalive, as the engine
// does for a connection that outlives parkAfter (pair.lateKeepAlive).
func setUpstreamKeepAlive(c *fconn) {
	if c.fd[1] >= 0 && c.ln.g.l.lateKeepAlive {
		setKeepAlive(c.fd[1])
	}
}

func (f *front) set(fd int, c *fconn) {
	for fd >= len(f.conns) {
		f.conns = append(f.conns, make([]*fconn, max(len(f.conns), 64))...)
	}
	f.conns[fd] = c
}

func (f *front) get() *fconn {
	if n := len(f.free); n > 0 {
		c := f.free[n-1]
		f.free = f.free[:n-1]
		return c
	}
	return &fconn{}
}

// put keeps c for the next connection; the free list is bounded so that
// a burst does not stay resident.
func (f *front) put(c *fconn) {
	*c = fconn{}
	if len(f.free) < 256 {
		f.free = append(f.free, c)
	}
}
