package sockerr

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// sizeofExtendedErr is struct sock_extended_err: ee_errno (u32), ee_origin,
// ee_type, ee_code, ee_pad (u8 each), ee_info, ee_data (u32). The kernel
// puts the offender's sockaddr right after it (SO_EE_OFFENDER).
const sizeofExtendedErr = 16

// maxDrain bounds one Drain. The queue is bounded by the receive buffer; a
// stream of ICMP errors arriving while it is read must not keep the reader
// there. What is left keeps POLLERR up and is read on the next round.
const maxDrain = 256

// Enable asks the kernel to report every ICMP error about the socket's
// datagrams (IPV6_RECVERR on an AF_INET6 socket, IP_RECVERR otherwise).
func Enable(fd int, v6 bool) error {
	if v6 {
		return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1)
	}
	return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVERR, 1)
}

// Control is Enable as a net.Dialer.Control: network is "udp4" or "udp6".
func Control(network, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = Enable(int(fd), strings.HasSuffix(network, "6"))
	}); err != nil {
		return err
	}
	return serr
}

// Drain reads the socket's error queue until it is empty (or maxDrain
// entries) and returns the first entry that explains errno (any entry, if
// errno is 0), nil if none does. Reading an ICMP entry clears the socket's
// pending error once no other ICMP entry follows, so a caller that did not
// take the pending error itself (a receive or send returned it) reports
// what Drain returns or knowingly drops it.
func Drain(fd int, errno syscall.Errno) *Error {
	var (
		found *Error
		buf   [64]byte // the datagram the error is about; only its start is read
		oob   [128]byte
	)
	for range maxDrain {
		_, oobn, _, _, err := unix.Recvmsg(fd, buf[:], oob[:], unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			break // EAGAIN: empty
		}
		if e, ok := Parse(oob[:oobn]); ok && found == nil && (errno == 0 || e.Errno == errno) {
			found = &e
		}
	}
	return found
}

// Explain adds what the error queue of rc's socket says to err, an error
// its receive or send returned, and drains the queue: "read udp …: recvfrom:
// no route to host (ICMP host unreachable from 10.0.0.1)". err is returned
// as it is when it holds no errno or the queue does not explain it.
func Explain(rc syscall.RawConn, err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err
	}
	var e *Error
	if cerr := rc.Control(func(fd uintptr) { e = Drain(int(fd), errno) }); cerr != nil || e == nil {
		return err
	}
	return fmt.Errorf("%w (%s)", err, e.Detail())
}

// Parse reads an error queue entry from the control messages of a
// MSG_ERRQUEUE receive (an IP_RECVERR or IPV6_RECVERR message). ok is false
// when there is none, or it is malformed or carries no error. Pure: bytes
// in, value out, for any input.
func Parse(oob []byte) (e Error, ok bool) {
	for len(oob) >= unix.SizeofCmsghdr {
		n, level, typ := cmsgHeader(oob)
		if n < unix.SizeofCmsghdr || n > uint64(len(oob)) {
			return Error{}, false
		}
		data := oob[unix.CmsgLen(0):n]
		if (level == unix.IPPROTO_IP && typ == unix.IP_RECVERR) ||
			(level == unix.IPPROTO_IPV6 && typ == unix.IPV6_RECVERR) {
			return parseExtendedErr(data)
		}
		step := uint64(unix.CmsgSpace(int(n) - unix.CmsgLen(0)))
		if step >= uint64(len(oob)) {
			break
		}
		oob = oob[step:]
	}
	return Error{}, false
}

// cmsgHeader reads a struct cmsghdr: cmsg_len is a size_t, then the level
// and type (ints), in the host's byte order.
func cmsgHeader(b []byte) (n uint64, level, typ int32) {
	ne := binary.NativeEndian
	off := unix.SizeofCmsghdr - 8
	if off == 8 {
		n = ne.Uint64(b)
	} else {
		n = uint64(ne.Uint32(b))
	}
	return n, int32(ne.Uint32(b[off:])), int32(ne.Uint32(b[off+4:]))
}

// parseExtendedErr reads a struct sock_extended_err and the offender's
// sockaddr_in or sockaddr_in6 after it, if the kernel gave one.
func parseExtendedErr(b []byte) (Error, bool) {
	if len(b) < sizeofExtendedErr {
		return Error{}, false
	}
	ne := binary.NativeEndian
	e := Error{Errno: syscall.Errno(ne.Uint32(b)), Origin: b[4], Type: b[5], Code: b[6]}
	if e.Errno == 0 {
		return Error{}, false // a notification (zero copy, timestamps), not an error
	}
	sa := b[sizeofExtendedErr:]
	if len(sa) >= 2 {
		switch ne.Uint16(sa) {
		case unix.AF_INET:
			if len(sa) >= 8 {
				e.Offender = netip.AddrFrom4([4]byte(sa[4:8]))
			}
		case unix.AF_INET6:
			if len(sa) >= 24 {
				e.Offender = netip.AddrFrom16([16]byte(sa[8:24])).Unmap()
			}
		}
	}
	return e, true
}
