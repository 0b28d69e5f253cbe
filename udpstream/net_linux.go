package udpstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/edgerelay/relay/internal/sockerr"
)

// batchSize is how many datagrams one recvmmsg/sendmmsg moves, on listen
// and session sockets alike. Measured (TestBench, 1200-byte datagrams,
// medians of 3 rounds): listen batches of 8, 32 and 64 cost the same within
// noise at 500 Mbit/s (36, 37, 40 % CPU for sender, relay and sink
// together); on the reply path 32 beat 8 (38–44 % against 40–49 %, and no
// loss where 8 lost 0.4–4 % in two of four sets). A batch is 32 × 64 KiB,
// held only while forwarding (see batchPool).
const batchSize = 32

// GSO and GRO, as measured on this project's machine kind:
//
//   - GSO is on. At a paced 500 Mbit/s the relay added 6 points of CPU over
//     the direct path with GSO and 16 without (TestBench medians); a plain
//     sender needed 3.3 µs per loopback datagram, a GSO sender 0.5 µs.
//   - GRO is off. With UDP_GRO set, 0 of 7281 datagrams from a plain sender
//     arrived coalesced over loopback (only GSO senders' did, 32 per read):
//     RTB players send plain datagrams, so there is nothing to gain that can
//     be measured here, and a socket with UDP_GRO whose reader misses the
//     cmsg would merge datagrams. It needs a NIC with GRO to be worth it.

// sysNet opens real UDP sockets with sized buffers, read and written in
// batches. Listen sockets have no SO_REUSEPORT: a successor takes them
// over (Config.Inherit), and a second relay on the same port must fail.
type sysNet struct {
	readBuffer, writeBuffer int
	freebind                bool // IP_FREEBIND on listen sockets
	log                     zerolog.Logger

	pool *batchPool
	gso  bool // send runs of equal-size datagrams as GSO writes

	// forceRead/forceWrite record that the plain SO_RCVBUF/SO_SNDBUF request
	// was capped by the sysctl and the FORCE variant was needed, learned on
	// the listen sockets, so that each new session socket costs two
	// setsockopt calls and no probing.
	forceRead, forceWrite atomic.Bool
	warned                atomic.Bool // the capped-buffer warning was logged

	// gsoKernel records whether the kernel knows UDP_SEGMENT, probed on the
	// first session socket: the probe is a system call, and under a flood
	// of new sources every call a session costs counts.
	gsoOnce   sync.Once
	gsoKernel bool
}

func newSysNet(readBuffer, writeBuffer int, freebind bool, log zerolog.Logger) *sysNet {
	return &sysNet{
		readBuffer:  readBuffer,
		writeBuffer: writeBuffer,
		freebind:    freebind,
		log:         log,
		pool:        NewBuffers().pool,
		gso:         true,
	}
}

func (n *sysNet) listen(addr string) (packetConn, error) {
	lc := net.ListenConfig{Control: n.controlListen}
	pc, err := lc.ListenPacket(context.Background(), udpNetwork(addr), addr)
	if err != nil {
		return nil, err
	}
	uc := pc.(*net.UDPConn)
	c, err := newSysConn(uc, false, n.pool, n.gso)
	if err == nil && uc.LocalAddr().(*net.UDPAddr).IP.IsUnspecified() {
		err = c.enablePktinfo()
	}
	if err != nil {
		_ = uc.Close()
		return nil, err
	}
	return c, nil
}

func (n *sysNet) newBatch() *batch { return n.pool.get() }
func (n *sysNet) trimBatches()     { n.pool.trimDue(time.Now()) }
func (n *sysNet) releaseBatches()  { n.pool.releaseFree() }

func (n *sysNet) inherit(f *os.File) (packetConn, error) {
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("inherit socket: %w", err)
	}
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		return nil, errors.New("inherit socket: not a UDP socket")
	}
	c, err := newSysConn(uc, false, n.pool, n.gso)
	if err == nil {
		// The buffer sizes may have changed with the config.
		err = n.controlListen("", "", c.rc)
	}
	if err == nil && uc.LocalAddr().(*net.UDPAddr).IP.IsUnspecified() {
		err = c.enablePktinfo()
	}
	if err != nil {
		_ = uc.Close()
		return nil, err
	}
	return c, nil
}

func (n *sysNet) dial(up netip.AddrPort) (packetConn, error) {
	network := "udp4"
	if !up.Addr().Is4() {
		network = "udp6"
	}
	d := net.Dialer{Control: n.controlSession}
	c, err := d.Dial(network, up.String())
	if err != nil {
		return nil, err
	}
	sc, err := newSysConn(c.(*net.UDPConn), true, n.pool, false)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	if n.gso && n.kernelGSO(sc) {
		sc.gso.max.Store(gsoMaxBytes)
	}
	return sc, nil
}

// kernelGSO reports whether the kernel knows UDP_SEGMENT, asking on c the
// first time.
func (n *sysNet) kernelGSO(c *sysConn) bool {
	n.gsoOnce.Do(func() {
		var g gsoState
		g.enable(c.rc)
		n.gsoKernel = g.limit() > 0
	})
	return n.gsoKernel
}

func (n *sysNet) controlListen(network, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		// freebind: bind the address before the box has it (the backup of
		// an HA pair), IPV6_FREEBIND on a udp6 socket.
		if n.freebind {
			level, opt := unix.SOL_IP, unix.IP_FREEBIND
			if strings.HasSuffix(network, "6") {
				level, opt = unix.SOL_IPV6, unix.IPV6_FREEBIND
			}
			if serr = unix.SetsockoptInt(int(fd), level, opt, 1); serr != nil {
				return
			}
		}
		gotR := setBuffer(int(fd), unix.SO_RCVBUF, unix.SO_RCVBUFFORCE, n.readBuffer, &n.forceRead)
		gotW := setBuffer(int(fd), unix.SO_SNDBUF, unix.SO_SNDBUFFORCE, n.writeBuffer, &n.forceWrite)
		if (gotR < n.readBuffer || gotW < n.writeBuffer) && n.warned.CompareAndSwap(false, true) {
			n.log.Warn().
				Int("read_buffer_wanted", n.readBuffer).Int("read_buffer_got", gotR).
				Int("write_buffer_wanted", n.writeBuffer).Int("write_buffer_got", gotW).
				Msg("udp socket buffers capped by the kernel; raise net.core.rmem_max / net.core.wmem_max (sysctl) or run with CAP_NET_ADMIN, else live streams may drop under bursts")
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// controlSession sizes a session socket the way the listen sockets needed
// and asks for every ICMP error (recverr_linux.go). Errors are ignored: a
// session with a smaller buffer still forwards, and one without the option
// still fails over on port unreachable.
func (n *sysNet) controlSession(network, _ string, rc syscall.RawConn) error {
	return rc.Control(func(fd uintptr) {
		_ = sockerr.Enable(int(fd), strings.HasSuffix(network, "6"))
		ropt, wopt := unix.SO_RCVBUF, unix.SO_SNDBUF
		if n.forceRead.Load() {
			ropt = unix.SO_RCVBUFFORCE
		}
		if n.forceWrite.Load() {
			wopt = unix.SO_SNDBUFFORCE
		}
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, ropt, n.readBuffer)
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, wopt, n.writeBuffer)
	})
}

// setBuffer asks for want bytes with opt, falls back to the FORCE variant
// (root or CAP_NET_ADMIN may exceed the sysctl cap) and returns what the
// socket got. Linux reports twice the requested size (it books overhead), so
// the reported value is halved to compare with the request.
func setBuffer(fd, opt, forceOpt, want int, forced *atomic.Bool) int {
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, want)
	got, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, opt)
	if err == nil && got/2 >= want {
		return got / 2
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, forceOpt, want) == nil {
		forced.Store(true)
	}
	got, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, opt)
	return got / 2
}

func defaultNetwork(cfg *Config) network {
	n := newSysNet(cfg.readBuffer(), cfg.writeBuffer(), cfg.Freebind, cfg.log())
	if cfg.Buffers != nil {
		n.pool = cfg.Buffers.pool
	}
	return n
}
