package udpstream

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A listen socket bound to every address (0.0.0.0 or [::]) must answer from
// the address each client sent to: left to the route, the kernel picks the
// box's primary address, and on a box with several (a VRRP virtual IP, a
// second subnet) a client's connected socket or NAT drops every reply. Such
// a socket asks for IP_PKTINFO / IPV6_PKTINFO on every datagram it reads,
// the session keeps the destination its client used, and every reply names
// it as the source in the same control message. A dual-stack socket uses
// the IPv6 form for IPv4 clients too, with the address IPv4-mapped (Linux
// accepts that on send and produces it on receive).
const (
	// pktinfoSpace fits one IPV6_PKTINFO (the larger of the two) message.
	pktinfoSpace = 40 // unix.CmsgSpace(unix.SizeofInet6Pktinfo) on 64-bit
	// outCtrlSpace is one out header's control slot: GSO then pktinfo.
	outCtrlSpace = gsoCmsgSpace + pktinfoSpace
)

// enablePktinfo asks the kernel for each datagram's destination address.
func (c *sysConn) enablePktinfo() error {
	var serr error
	err := c.rc.Control(func(fd uintptr) {
		if c.v6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		}
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return serr
	}
	c.pktinfo = true
	return nil
}

// readPktinfo returns the local address a datagram was sent to, from the
// control messages recvmsg left in ctl, unmapped; zero if there is none.
// It walks the headers by hand: unix.ParseSocketControlMessage allocates.
func readPktinfo(ctl []byte) netip.Addr {
	for len(ctl) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
		n := int(h.Len)
		if n < unix.SizeofCmsghdr || n > len(ctl) {
			return netip.Addr{}
		}
		data := ctl[unix.CmsgLen(0):n]
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			info := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			return netip.AddrFrom4(info.Spec_dst)
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			info := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			return netip.AddrFrom16(info.Addr).Unmap()
		}
		step := unix.CmsgSpace(n - unix.CmsgLen(0))
		if step > len(ctl) {
			return netip.Addr{}
		}
		ctl = ctl[step:]
	}
	return netip.Addr{}
}

// putPktinfo writes a control message that makes local the source address
// of a datagram and returns its length. The interface is left to the route.
func putPktinfo(cm []byte, local netip.Addr, v6 bool) int {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&cm[0]))
	data := unsafe.Pointer(&cm[unix.CmsgLen(0)])
	if v6 {
		h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
		*(*unix.Inet6Pktinfo)(data) = unix.Inet6Pktinfo{Addr: local.As16()}
		return unix.CmsgSpace(unix.SizeofInet6Pktinfo)
	}
	h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
	*(*unix.Inet4Pktinfo)(data) = unix.Inet4Pktinfo{Spec_dst: local.Unmap().As4()}
	return unix.CmsgSpace(unix.SizeofInet4Pktinfo)
}
