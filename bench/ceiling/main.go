//go:build linux

// Command ceiling is a minimal TCP forwarder, not part of relay, used to find how
// little CPU a Go forwarder can spend on a short connection on this machine:
// raw non-blocking sockets, its own edge-triggered epoll loop(s), no
// goroutine per connection, no net package.
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

type options struct {
	listen, upstream string
	loops            int
	reuseport        bool
	halfClose        bool
	lock             bool
	rawWait          bool // epoll_wait via RawSyscall (holds the P), else syscall.EpollWait
	spin             bool // try epoll_wait(timeout 0) raw before blocking in syscall.EpollWait
	nodelay          bool
	accepts          int
	exclusive        bool
	rst              bool // SO_LINGER 0 on the upstream: close with RST (not a real option: loses data)
	deferAccept      bool // TCP_DEFER_ACCEPT on the listener
}

func main() {
	var o options
	flag.StringVar(&o.listen, "listen", "", "listen address ip:port")
	flag.StringVar(&o.upstream, "upstream", "", "upstream address ip:port")
	flag.IntVar(&o.loops, "loops", runtime.GOMAXPROCS(0), "event loops")
	flag.BoolVar(&o.reuseport, "reuseport", true, "one SO_REUSEPORT listener per loop (else one shared listener)")
	flag.BoolVar(&o.exclusive, "exclusive", true, "shared listener: EPOLLEXCLUSIVE")
	flag.BoolVar(&o.halfClose, "halfclose", false, "pass EOF on with shutdown(SHUT_WR) and close when both directions ended (else close both on first EOF)")
	flag.BoolVar(&o.lock, "lock", false, "LockOSThread in each loop")
	flag.BoolVar(&o.rawWait, "rawwait", false, "block in epoll_wait through RawSyscall6 (timeout 50 ms)")
	flag.BoolVar(&o.spin, "spin", false, "poll epoll_wait(0) raw first, block only when nothing is ready")
	flag.BoolVar(&o.nodelay, "nodelay", true, "TCP_NODELAY on both sockets")
	flag.IntVar(&o.accepts, "accepts", 4, "accepts per listener event at most")
	flag.BoolVar(&o.rst, "rst", false, "SO_LINGER 0 on the upstream socket: close it with RST (ceiling only, unsafe)")
	flag.BoolVar(&o.deferAccept, "deferaccept", false, "TCP_DEFER_ACCEPT 1 s on the listener")
	flag.Parse()
	if len(os.Args) == 2 && os.Args[1] == "version" {
		fmt.Println("ceiling prototype")
		return
	}
	lap, err := netip.ParseAddrPort(o.listen)
	if err != nil {
		fatal("listen: %v", err)
	}
	uap, err := netip.ParseAddrPort(o.upstream)
	if err != nil {
		fatal("upstream: %v", err)
	}
	// A measuring tool: it forwards between IPv4 loopback addresses only,
	// so no run can send traffic off the machine.
	for _, ap := range []netip.AddrPort{lap, uap} {
		if !ap.Addr().Is4() || !ap.Addr().IsLoopback() {
			fatal("%s: only 127.0.0.0/8 addresses are allowed", ap)
		}
	}
	up := sockaddr(uap)
	var shared int = -1
	if !o.reuseport {
		shared = listenFD(lap, false, o.deferAccept)
	}
	for i := 0; i < o.loops; i++ {
		lfd := shared
		if o.reuseport {
			lfd = listenFD(lap, true, o.deferAccept)
		}
		l := newLoop(o, lfd, up)
		go l.run()
	}
	fmt.Fprintf(os.Stderr, "ceiling: %d loops on %s -> %s (reuseport %v, halfclose %v, lock %v, rawwait %v, spin %v, GOMAXPROCS %d)\n",
		o.loops, o.listen, o.upstream, o.reuseport, o.halfClose, o.lock, o.rawWait, o.spin, runtime.GOMAXPROCS(0))
	select {} // the loops run until the process is stopped
}

func fatal(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "ceiling: "+f+"\n", a...)
	os.Exit(1)
}

func sockaddr(ap netip.AddrPort) syscall.RawSockaddrInet4 {
	var sa syscall.RawSockaddrInet4
	sa.Family = syscall.AF_INET
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0] = byte(ap.Port() >> 8)
	p[1] = byte(ap.Port())
	sa.Addr = ap.Addr().As4()
	return sa
}

func listenFD(ap netip.AddrPort, reuseport, deferAccept bool) int {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		fatal("socket: %v", err)
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if reuseport {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1); err != nil {
			fatal("SO_REUSEPORT: %v", err)
		}
	}
	if deferAccept {
		_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, 1)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		fatal("bind %s: %v", ap, err)
	}
	if err := syscall.Listen(fd, 4096); err != nil {
		fatal("listen: %v", err)
	}
	return fd
}
