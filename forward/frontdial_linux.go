package forward

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// watch adds a connection's socket to the epoll set, edge-triggered.
func (f *front) watch(c *fconn, fd int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET,
		Fd: int32(fd), Pad: int32(c.gen)}
	return rawEpollCtl(f.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

// dial starts a connect to the next upstream that is up; with none left
// the client is closed with the dial errors, as the engine does.
func (f *front) dial(c *fconn) {
	l := c.ln.g.l
	for t := c.cur.Next(); t != nil; t = c.cur.Next() {
		fd, err := connectTo(t.AddrPort())
		if err == nil {
			c.target, c.fd[1] = t, fd
			c.deadline = f.now.Add(l.cfg.connectTimeout())
			f.set(fd, c)
			if err = f.watch(c, fd); err == nil {
				c.ln.g.dialling++
				return
			}
			f.set(fd, nil)
			rawClose(fd)
			c.fd[1] = -1
		}
		c.attemptFailed(err)
	}
	err := c.cur.Err()
	if err == nil {
		err = &dialError{errs: c.failed}
	}
	f.unreachable(c, err)
}

// connectTo opens a non-blocking socket to ap and starts its connect.
func connectTo(ap netip.AddrPort) (int, error) {
	family := unix.AF_INET
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		family = unix.AF_INET6
	}
	fd, err := rawSocket(family)
	if err != nil {
		return -1, dialErr(ap, err)
	}
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY,
		uintptr(unsafe.Pointer(&frontOne)), 4, 0)
	var e syscall.Errno
	if family == unix.AF_INET {
		sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ap.Addr().Unmap().As4()}
		putPort(&sa.Port, ap.Port())
		_, _, e = syscall.RawSyscall(syscall.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	} else {
		sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ap.Addr().As16()}
		putPort(&sa.Port, ap.Port())
		if sa.Scope_id, err = scopeID(fd, ap.Addr().Zone()); err != nil {
			rawClose(fd)
			return -1, dialErr(ap, err)
		}
		_, _, e = syscall.RawSyscall(syscall.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	}
	if e != 0 && e != syscall.EINPROGRESS {
		rawClose(fd)
		return -1, dialErr(ap, os.NewSyscallError("connect", e))
	}
	return fd, nil
}

// scopeID is the index of the interface a link-local upstream names
// (fe80::1%eth0), which the kernel needs to connect to it (EINVAL
// without), as net.Dialer finds it: the interface of that name, else
// the zone read as an index. 0 without a zone. One ioctl on fd, the
// socket being connected, only for an address with a zone.
func scopeID(fd int, zone string) (uint32, error) {
	if zone == "" {
		return 0, nil
	}
	ifr, err := unix.NewIfreq(zone)
	if err == nil {
		if err = unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err == nil {
			return ifr.Uint32(), nil
		}
		err = os.NewSyscallError("ioctl SIOCGIFINDEX", err)
	}
	if n, nerr := strconv.ParseUint(zone, 10, 32); nerr == nil {
		return uint32(n), nil
	}
	return 0, fmt.Errorf("interface %q: %w", zone, err)
}

// dialErr words a failed connect as net.Dialer does ("dial tcp ADDR:
// connect: connection refused"), for the same log lines either way.
func dialErr(ap netip.AddrPort, err error) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: err}
}

// putPort and getPort write and read a sockaddr's port, which is in
// network byte order.
func putPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

func getPort(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// peerAddr reads accept4's address of the peer.
func peerAddr(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		in := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(in.Addr), getPort(&in.Port))
	case unix.AF_INET6:
		in := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom16(in.Addr).Unmap(), getPort(&in.Port))
	}
	return netip.AddrPort{}
}

// peer is accept4's address of the client just accepted on fd, with a
// link-local client's interface as its zone (fe80::1%eth0), as net gives
// the engine's RemoteAddr: access lines, the ACL and per-source limits
// see the same address on either path.
func (f *front) peer(fd int) netip.AddrPort {
	ap := peerAddr(&f.sa)
	if f.sa.Addr.Family != unix.AF_INET6 {
		return ap
	}
	if id := (*unix.RawSockaddrInet6)(unsafe.Pointer(&f.sa)).Scope_id; id != 0 {
		ap = netip.AddrPortFrom(ap.Addr().WithZone(f.zones.name(fd, id, f.now)), ap.Port())
	}
	return ap
}

// zoneNames names the interfaces of link-local clients' scope ids as net
// names a zone: the interface's name, or the index in decimal when no
// interface has it. A name is asked of the kernel (one SIOCGIFNAME
// ioctl, on the accepted socket) once per scope id and zoneTTL, as net's
// own cache is refreshed, so the accept path of a client that is not
// link-local costs nothing and one that is costs an ioctl a minute. An
// interface renamed or replaced is seen within zoneTTL. Owned by the
// front's loop; it holds one entry per interface clients came in on within
// zoneTTL: an id asked again forgets the ones not asked meanwhile, so
// interfaces that come and go (a replugged adapter, a VPN's tunnel: a new
// index each time) are not remembered for good (TestZoneNamesForgetOld).
type zoneNames map[uint32]zoneName

type zoneName struct {
	name string
	at   time.Time
}

const zoneTTL = time.Minute

func (z *zoneNames) name(fd int, id uint32, now time.Time) string {
	if n, ok := (*z)[id]; ok && now.Sub(n.at) < zoneTTL {
		return n.name
	}
	name := strconv.FormatUint(uint64(id), 10)
	if ifr, err := unix.NewIfreq(""); err == nil {
		ifr.SetUint32(id)
		if unix.IoctlIfreq(fd, unix.SIOCGIFNAME, ifr) == nil {
			name = ifr.Name()
		}
	}
	if *z == nil {
		*z = zoneNames{}
	}
	for k, n := range *z {
		if now.Sub(n.at) >= zoneTTL {
			delete(*z, k)
		}
	}
	(*z)[id] = zoneName{name, now}
	return name
}

// dialFailed gives up the connect under way and tries the next upstream.
func (f *front) dialFailed(c *fconn, err error) {
	fd := c.fd[1]
	f.set(fd, nil)
	rawClose(fd)
	c.fd[1] = -1
	c.ln.g.dialling--
	c.attemptFailed(dialErr(c.target.AddrPort(), err))
	c.target = nil
	f.dial(c)
}

// attemptFailed records a failed dial of the upstream the cursor gave
// last: its health, the listener's counter and the client's error list.
func (c *fconn) attemptFailed(err error) {
	c.cur.Failed(err)
	c.ln.g.l.stats.DialFailures.Add(1)
	c.failed = append(c.failed, err)
}

// unreachable ends a client no upstream took.
func (f *front) unreachable(c *fconn, err error) {
	l := c.ln.g.l
	f.release(c)
	l.logDialFailure(c.client, c.ln.index, err, c.start)
	l.connDone(c.client)
	f.put(c)
}

// soError is a failed connect's error.
func soError(fd int) error {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return os.NewSyscallError("getsockopt", err)
	}
	if v == 0 {
		return os.NewSyscallError("connect", syscall.ECONNREFUSED)
	}
	return os.NewSyscallError("connect", syscall.Errno(v))
}

// The loop's own syscalls go through RawSyscall: none of them blocks, and
// the runtime's entersyscall, the way unix.Close and its kin go, wakes the
// runtime's monitor thread (sysmon) from its deep sleep at every call, and
// a woken monitor polls every 20 us for a millisecond: 0.7 nanosleep per
// connection under strace, 6 % of the relay's CPU in perf, and a context
// switch each on a small box.

func rawClose(fd int) {
	syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0)
}

func rawEpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd),
		uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return os.NewSyscallError("epoll_ctl", e)
	}
	return nil
}

func rawSocket(family int) (int, error) {
	r, _, e := syscall.RawSyscall(syscall.SYS_SOCKET, uintptr(family),
		syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, os.NewSyscallError("socket", e)
	}
	return int(r), nil
}
