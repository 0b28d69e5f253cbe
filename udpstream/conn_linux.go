package udpstream

import (
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/edgerelay/relay/internal/sockfile"
)

// The batched path calls recvmmsg/sendmmsg through x/sys directly rather
// than golang.org/x/net/ipv4's ReadBatch: x/net parses every received source
// address into a fresh *net.UDPAddr and net.IP (two allocations per datagram,
// see its internal/socket parseInetAddr), which the relay cannot afford at
// 100 kpps; here the source lands in a reused sockaddr and becomes a
// netip.AddrPort value.

// sysScratch holds the syscall headers of a batch. For reading, hdrs[i]
// points at iovs[i] (which points at msgs[i].buf) and at names[i]; the
// pointers are set once, only lengths change per call. For writing, out
// holds one header per datagram, or per run of datagrams sent as one GSO
// write (see planWrite); the iovs stay the same.
type sysScratch struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for sockaddr_in too

	out    []unix.Mmsghdr
	outEnd []int  // outEnd[k]: the message index after the last one out[k] carries
	ctrl   []byte // a UDP_SEGMENT and a pktinfo control message slot per out header
	rctl   []byte // a pktinfo slot per message, for reads from a wildcard listen socket

	// State of the write in progress (indexes into out), read by sendFn
	// inside RawConn.Write. A closure built once per batch keeps the hot
	// path free of allocation.
	wFrom, wTo int
	wErr       error
	sendFn     func(fd uintptr) bool
}

func (s *sysScratch) init(b *batch) {
	n := len(b.msgs)
	s.hdrs = make([]unix.Mmsghdr, n)
	s.iovs = make([]unix.Iovec, n)
	s.names = make([]unix.RawSockaddrInet6, n)
	s.out = make([]unix.Mmsghdr, n)
	s.outEnd = make([]int, n)
	s.ctrl = make([]byte, n*outCtrlSpace)
	s.rctl = make([]byte, n*pktinfoSpace)
	for i := range b.msgs {
		s.iovs[i].Base = unsafe.SliceData(b.msgs[i].buf[:1])
		s.hdrs[i].Hdr.Iov = &s.iovs[i]
		s.hdrs[i].Hdr.SetIovlen(1)
	}
	s.sendFn = s.send
}

// send runs sendmmsg until wFrom reaches wTo. It returns false on EAGAIN so
// that RawConn.Write waits for the socket to become writable.
//
// sendmmsg, recvmmsg and ppoll go through RawSyscall6: the sockets are
// nonblocking, so no call waits and the scheduler gains nothing from its
// syscall bookkeeping, while that bookkeeping (entersyscall) wakes the
// runtime's monitor thread after every idle gap, and a paced stream is
// all gaps. With it, a stream of 1 000 datagrams a second each way cost
// the relay 0.55x the CPU (64-80 against 110-151 ms per 1 000, futex and
// nanosleep 0.7-1.3 per datagram down to 0.04; BENCHMARKS).
func (s *sysScratch) send(fd uintptr) bool {
	for s.wFrom < s.wTo {
		n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd,
			uintptr(unsafe.Pointer(&s.out[s.wFrom])), uintptr(s.wTo-s.wFrom), 0, 0, 0)
		switch errno {
		case 0:
			s.wFrom += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			s.wErr = errno // wrapped by writeBatch, which first checks for GSO refusals
			return true
		}
	}
	return true
}

// sysConn is a UDP socket read and written in batches.
type sysConn struct {
	uc        *net.UDPConn
	rc        syscall.RawConn
	v6        bool // AF_INET6 socket: destinations are written as sockaddr_in6
	connected bool // connected to one upstream: no addresses on the wire calls
	pktinfo   bool // bound to every address: datagrams carry their local address (pktinfo_linux.go)
	pool      *batchPool
	gso       gsoState

	// Read state. A packetConn has one reader at a time, so one closure
	// built at construction serves every read without allocating.
	rb     *batch
	rerr   error
	recvFn func(fd uintptr) bool
	// starved records that recv found the socket readable and the pool at
	// its cap: readBatch waits for a batch outside the socket's read
	// lock (a Close waits for that lock) and reads again.
	starved bool

	// A connected (session) socket waits for readiness before it takes a
	// batch, when its last read left nothing queued: a batch holds 2 MiB,
	// and a session that is never answered (a spoofed flood) would
	// otherwise take one from the pool on every speculative read.
	drained bool
	waitFn  func(fd uintptr) bool
	// pollErr records that the last wait saw POLLERR: an error, or an
	// error queue to empty (recverr_linux.go).
	pollErr bool
}

func newSysConn(uc *net.UDPConn, connected bool, pool *batchPool, gso bool) (*sysConn, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	local, _ := uc.LocalAddr().(*net.UDPAddr)
	c := &sysConn{
		uc:        uc,
		rc:        rc,
		v6:        local != nil && local.IP.To4() == nil,
		connected: connected,
		pool:      pool,
	}
	c.recvFn = c.recv
	c.waitFn = c.wait
	c.drained = connected
	if gso {
		c.gso.enable(rc)
	}
	return c, nil
}

func (c *sysConn) readBatch() (*batch, error) {
	if c.drained {
		if err := c.rc.Read(c.waitFn); err != nil {
			return nil, err
		}
	}
	c.rerr = nil
	err := c.rc.Read(c.recvFn)
	for err == nil && c.starved {
		c.starved = false
		c.rb = c.pool.get()
		err = c.rc.Read(c.recvFn)
	}
	b := c.rb
	c.rb = nil
	if err == nil {
		err = c.rerr
	}
	if err != nil {
		if b != nil {
			b.release()
		}
		return nil, err
	}
	return b, nil
}

// wait makes RawConn.Read wait for readiness without taking a batch: it
// polls the socket without waiting, and says "done" when a datagram is
// queued or the socket has an error to report, "not yet" otherwise. The
// poll cannot be skipped on the first call: RawConn.Read clears the
// readiness the poller recorded before it, so a datagram that came before
// the call would otherwise wait for the next one.
func (c *sysConn) wait(fd uintptr) bool {
	ev := pollNow(fd)
	c.pollErr = ev&unix.POLLERR != 0
	return ev != 0
}

// pollNow returns the poll(2) events of fd (POLLIN, POLLERR), without
// waiting. It is poll and not a MSG_PEEK read on purpose: every receive
// call, a peek too, takes the socket's pending error (the kernel clears
// sk_err as it reports it), so a peek that met the ECONNREFUSED of an ICMP
// port unreachable swallowed it, the recvmmsg after it found nothing, and
// the session never failed over (TestFailoverWithoutResend). poll leaves
// the error for the recvmmsg to report.
func pollNow(fd uintptr) int16 {
	pfd := unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	var ts unix.Timespec // zero: do not wait
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1,
			uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 || n == 0 {
			return 0
		}
		return pfd.Revents
	}
}

// recv runs one recvmmsg. The batch is taken from the pool here, when the
// socket has signalled readiness, and handed back on EAGAIN, so a waiting
// reader holds no buffers. With none to take (the pool is at its cap) it
// sets starved and returns, for readBatch to wait for one.
func (c *sysConn) recv(fd uintptr) bool {
	if c.rb == nil {
		if c.rb = c.pool.tryGet(); c.rb == nil {
			c.starved = true
			return true
		}
	}
	b := c.rb
	s := &b.sys
	for i := range s.hdrs {
		h := &s.hdrs[i].Hdr
		s.iovs[i].SetLen(msgBufSize)
		h.Flags = 0
		if c.connected {
			h.Name, h.Namelen = nil, 0
		} else {
			h.Name = (*byte)(unsafe.Pointer(&s.names[i]))
			h.Namelen = unix.SizeofSockaddrInet6
		}
		if c.pktinfo {
			h.Control = &s.rctl[i*pktinfoSpace]
			h.SetControllen(pktinfoSpace)
		} else {
			h.Control = nil
			h.SetControllen(0)
		}
	}
	var n uintptr
	for {
		var errno syscall.Errno
		n, _, errno = unix.RawSyscall6(unix.SYS_RECVMMSG, fd,
			uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(len(s.hdrs)), 0, 0, 0)
		if errno == 0 {
			break
		}
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if c.pollErr {
				c.pollErr = false
				if errno = leftoverError(fd); errno != 0 {
					c.rerr = os.NewSyscallError("recvmmsg", explained(fd, errno))
					return true
				}
			}
			b.release()
			c.rb = nil
			return false
		default:
			err := error(errno)
			if c.connected {
				err = explained(fd, errno)
			}
			c.rerr = os.NewSyscallError("recvmmsg", err)
			return true
		}
	}
	b.n = int(n)
	c.drained = c.connected && b.n < len(s.hdrs)
	for i := 0; i < b.n; i++ {
		m := &b.msgs[i]
		m.buf = m.buf[:s.hdrs[i].Len]
		m.truncated = s.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0
		if !c.connected {
			m.addr = addrPortFromSockaddr(&s.names[i])
			m.local = netip.Addr{}
			if c.pktinfo {
				m.local = readPktinfo(s.rctl[i*pktinfoSpace : i*pktinfoSpace+int(s.hdrs[i].Hdr.Controllen)])
			}
		}
	}
	return true
}

func (c *sysConn) writeBatch(b *batch, from, to int) (int, error) {
	s := &b.sys
	s.wFrom, s.wTo, s.wErr = 0, c.planWrite(b, from, to), nil
	err := c.rc.Write(s.sendFn)
	sent := from
	if s.wFrom > 0 {
		sent = s.outEnd[s.wFrom-1]
	}
	if err != nil {
		return sent - from, err
	}
	if errno, ok := s.wErr.(syscall.Errno); ok {
		if run := s.outEnd[s.wFrom] - sent; run > 1 && c.gso.refused(errno, len(b.msgs[sent].buf)) {
			// The kernel would not take this run as one GSO write;
			// gsoState now excludes it, so send it again without.
			n, err := c.writeBatch(b, sent, to)
			return sent - from + n, err
		}
		err := error(errno)
		if c.connected {
			err = c.queuedError(errno)
		}
		return sent - from, os.NewSyscallError("sendmmsg", err)
	}
	return sent - from, nil
}

// answered polls the socket without the poller (Control, not Read): a
// reply may be queued long before the session's goroutine gets to run
// while a flood keeps the scheduler busy. An ICMP error is no answer, and
// it stays for the session's reader to act on (see pollNow).
func (c *sysConn) answered() bool {
	queued := false
	_ = c.rc.Control(func(fd uintptr) { queued = pollNow(fd)&unix.POLLIN != 0 })
	return queued
}

func (c *sysConn) localAddr() net.Addr { return c.uc.LocalAddr() }
func (c *sysConn) stopReading() error  { return c.uc.SetReadDeadline(time.Unix(1, 0)) }
func (c *sysConn) file() (*os.File, error) {
	return sockfile.Dup(c.uc, c.uc.LocalAddr().String()) // not uc.File: see sockfile
}
func (c *sysConn) close() error { return c.uc.Close() }

// addrPortFromSockaddr reads a sockaddr_in or sockaddr_in6 without
// allocating. IPv4-mapped addresses are unmapped, so sessions, Admit and
// logs see an IPv4 client of a dual-stack socket as IPv4 (putSockaddr maps
// it back). An IPv6 zone (scope id) is not kept: zones are strings in netip,
// and link-local clients of a relay are not a case worth a lookup.
func addrPortFromSockaddr(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), netPort(&sa4.Port))
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), netPort(&sa.Port))
	}
	return netip.AddrPort{}
}

// putSockaddr writes ap as the socket's family expects and returns the
// sockaddr length. An address the family cannot carry is written as IPv6 and
// left for the kernel to refuse (counted as a send error), never a panic.
func putSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort, v6 bool) uint32 {
	a := ap.Addr()
	if !v6 && a.Unmap().Is4() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		sa4.Family = unix.AF_INET
		setNetPort(&sa4.Port, ap.Port())
		sa4.Addr = a.Unmap().As4()
		sa4.Zero = [8]uint8{}
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
	setNetPort(&sa.Port, ap.Port())
	return unix.SizeofSockaddrInet6
}

// netPort and setNetPort access a sockaddr port, stored in network order.
func netPort(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

func setNetPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}
