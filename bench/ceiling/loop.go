//go:build linux

package main

import (
	"runtime"
	"syscall"
	"unsafe"
)

const (
	epollRDHUP     = 0x2000
	epollET        = 1 << 31
	epollExclusive = 1 << 28
	tcpNoDelay     = 1
)

type loop struct {
	o      options
	ep     int
	lfd    int
	up     syscall.RawSockaddrInet4
	conns  []*conn // by descriptor
	free   []*conn
	buf    []byte
	events []syscall.EpollEvent
}

// conn is one proxied connection; side 0 is the client, side 1 the upstream.
type conn struct {
	fd        [2]int
	connected bool
	pend      [2][]byte // read from side i, waiting to be written to the other side
	ready     [2]bool   // side i may hold data or EOF not read yet
	rdhup     [2]bool   // side i has reported EPOLLRDHUP: read until EOF
	eof       [2]bool
}

func newLoop(o options, lfd int, up syscall.RawSockaddrInet4) *loop {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		fatal("epoll_create1: %v", err)
	}
	l := &loop{o: o, ep: ep, lfd: lfd, up: up, conns: make([]*conn, 1024),
		buf: make([]byte, 16<<10), events: make([]syscall.EpollEvent, 128)}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(lfd)}
	if !o.reuseport && o.exclusive {
		ev.Events |= epollExclusive
	}
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, lfd, &ev); err != nil {
		fatal("epoll_ctl listener: %v", err)
	}
	return l
}

func (l *loop) run() {
	if l.o.lock {
		runtime.LockOSThread()
	}
	for {
		n := l.wait()
		for i := 0; i < n; i++ {
			ev := &l.events[i]
			fd := int(ev.Fd)
			if fd == l.lfd {
				l.accept()
				continue
			}
			if fd < len(l.conns) && l.conns[fd] != nil {
				l.handle(l.conns[fd], fd, ev.Events)
			}
		}
	}
}

func (l *loop) wait() int {
	evp := uintptr(unsafe.Pointer(&l.events[0]))
	if l.o.rawWait {
		for {
			n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(l.ep), evp, uintptr(len(l.events)), 10, 0, 0)
			if e == 0 && n > 0 {
				return int(n)
			}
			if e == 0 || e == syscall.EINTR {
				// A goroutine in RawSyscall cannot be preempted: an idle
				// loop that only ever re-enters epoll_wait would hold its
				// P through a stop-the-world forever (seen: the whole
				// process stalled). Yield at every timeout or signal.
				runtime.Gosched()
				continue
			}
			fatal("epoll_wait: %v", e)
		}
	}
	if l.o.spin {
		n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(l.ep), evp, uintptr(len(l.events)), 0, 0, 0)
		if e == 0 && n > 0 {
			return int(n)
		}
	}
	for {
		n, err := syscall.EpollWait(l.ep, l.events, -1)
		if err == nil && n > 0 {
			return n
		}
		if err != nil && err != syscall.EINTR {
			fatal("epoll_wait: %v", err)
		}
	}
}

func raw(trap, a1, a2, a3 uintptr) (uintptr, syscall.Errno) {
	r, _, e := syscall.RawSyscall(trap, a1, a2, a3)
	return r, e
}

func (l *loop) accept() {
	for i := 0; i < l.o.accepts; i++ {
		r, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, uintptr(l.lfd), 0, 0,
			syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
		if e != 0 {
			return // EAGAIN, or out of descriptors: try again on the next event
		}
		l.open(int(r))
	}
}

var one int32 = 1

func nodelay(fd int) {
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, tcpNoDelay,
		uintptr(unsafe.Pointer(&one)), 4, 0)
}

func (l *loop) open(cfd int) {
	r, e := raw(syscall.SYS_SOCKET, syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if e != 0 {
		raw(syscall.SYS_CLOSE, uintptr(cfd), 0, 0)
		return
	}
	ufd := int(r)
	if l.o.nodelay {
		nodelay(cfd)
		nodelay(ufd)
	}
	if l.o.rst {
		lg := syscall.Linger{Onoff: 1, Linger: 0}
		syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(ufd), syscall.SOL_SOCKET, syscall.SO_LINGER,
			uintptr(unsafe.Pointer(&lg)), unsafe.Sizeof(lg), 0)
	}
	_, e = raw(syscall.SYS_CONNECT, uintptr(ufd), uintptr(unsafe.Pointer(&l.up)), unsafe.Sizeof(l.up))
	if e != 0 && e != syscall.EINPROGRESS {
		raw(syscall.SYS_CLOSE, uintptr(cfd), 0, 0)
		raw(syscall.SYS_CLOSE, uintptr(ufd), 0, 0)
		return
	}
	c := l.get()
	c.fd = [2]int{cfd, ufd}
	c.connected = e == 0
	l.set(cfd, c)
	l.set(ufd, c)
	for _, fd := range c.fd {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLOUT | epollRDHUP | epollET, Fd: int32(fd)}
		syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(l.ep), syscall.EPOLL_CTL_ADD, uintptr(fd),
			uintptr(unsafe.Pointer(&ev)), 0, 0)
	}
}

func (l *loop) get() *conn {
	if n := len(l.free); n > 0 {
		c := l.free[n-1]
		l.free = l.free[:n-1]
		return c
	}
	return &conn{}
}

func (l *loop) set(fd int, c *conn) {
	for fd >= len(l.conns) {
		l.conns = append(l.conns, make([]*conn, len(l.conns))...)
	}
	l.conns[fd] = c
}

func (l *loop) close(c *conn) {
	for _, fd := range c.fd {
		raw(syscall.SYS_CLOSE, uintptr(fd), 0, 0)
		l.conns[fd] = nil
	}
	*c = conn{pend: [2][]byte{c.pend[0][:0], c.pend[1][:0]}}
	l.free = append(l.free, c)
}

func (l *loop) handle(c *conn, fd int, events uint32) {
	side := 0
	if fd == c.fd[1] {
		side = 1
	}
	if side == 1 && !c.connected {
		if events&(syscall.EPOLLERR|syscall.EPOLLHUP) != 0 {
			l.close(c) // connect failed
			return
		}
		if events&syscall.EPOLLOUT == 0 {
			return
		}
		c.connected = true
	}
	if events&(syscall.EPOLLIN|epollRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		c.ready[side] = true
		if events&(epollRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
			c.rdhup[side] = true
		}
	}
	if events&syscall.EPOLLOUT != 0 {
		// Writable: flush what waits for this side, then read the other.
		if !l.flush(c, 1-side) {
			return
		}
	}
	if c.ready[side] {
		l.pump(c, side)
	}
	if c.fd[0] >= 0 && c.ready[1-side] && len(c.pend[1-side]) == 0 && l.conns[c.fd[0]] == c {
		// The other side's reads may have waited for the connect.
		l.pump(c, 1-side)
	}
}

// flush writes what was read from side s to the other side; false when the
// connection went away or s's data still waits.
func (l *loop) flush(c *conn, s int) bool {
	p := c.pend[s]
	if len(p) == 0 {
		return true
	}
	if s == 0 && !c.connected {
		return true
	}
	w, e := raw(syscall.SYS_WRITE, uintptr(c.fd[1-s]), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e == syscall.EAGAIN {
		return true
	}
	if e != 0 {
		l.close(c)
		return false
	}
	c.pend[s] = append(p[:0], p[w:]...)
	if len(c.pend[s]) == 0 && c.eof[s] {
		return l.ended(c, s)
	}
	return true
}

// pump moves data from side s to the other side until s is drained, the
// other side is full, or s ends.
func (l *loop) pump(c *conn, s int) {
	if c.eof[s] || len(c.pend[s]) > 0 || (s == 0 && !c.connected) {
		return
	}
	d := 1 - s
	for {
		n, e := raw(syscall.SYS_READ, uintptr(c.fd[s]), uintptr(unsafe.Pointer(&l.buf[0])), uintptr(len(l.buf)))
		if e == syscall.EAGAIN {
			c.ready[s] = false
			return
		}
		if e != 0 {
			l.close(c)
			return
		}
		if n == 0 {
			c.ready[s] = false
			c.eof[s] = true
			l.ended(c, s)
			return
		}
		w, e := raw(syscall.SYS_WRITE, uintptr(c.fd[d]), uintptr(unsafe.Pointer(&l.buf[0])), n)
		if e == syscall.EAGAIN {
			w, e = 0, 0
		}
		if e != 0 {
			l.close(c)
			return
		}
		if w < n {
			c.pend[s] = append(c.pend[s][:0], l.buf[w:n]...)
			return
		}
		if int(n) < len(l.buf) && !c.rdhup[s] {
			// Drained for now; new data or a FIN raises a new edge.
			c.ready[s] = false
			return
		}
	}
}

// ended handles side s's EOF once everything s sent was delivered; false
// when the connection was closed.
func (l *loop) ended(c *conn, s int) bool {
	if len(c.pend[s]) > 0 {
		return true
	}
	if !l.o.halfClose || c.eof[1-s] {
		l.close(c)
		return false
	}
	raw(syscall.SYS_SHUTDOWN, uintptr(c.fd[1-s]), syscall.SHUT_WR, 0)
	return true
}
