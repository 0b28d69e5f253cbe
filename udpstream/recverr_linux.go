package udpstream

import (
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/edgerelay/relay/internal/sockerr"
)

// A session socket has IP_RECVERR / IPV6_RECVERR set (controlSession), so
// that the host unreachable of a failed ARP or neighbour discovery, a
// powered-off player on the relay's own LAN, reaches it: without the option
// Linux reports only the hard ICMP errors (port unreachable, the rejects)
// on a connected UDP socket and drops the rest. The kernel then reports an
// ICMP error twice: as the socket's pending error, which the next receive
// or send returns (once, to one of them), and as an entry of the socket's
// error queue, with the ICMP type and its sender. The call that returns the
// pending error reads the queue for the details and empties it; the reader
// empties what is left when poll(2) shows POLLERR with nothing pending (a
// send took the error first). Nothing of this runs on a datagram's normal
// path: every system call here follows an error or a POLLERR.

// explained is errno, the pending error a receive or send on the session
// socket fd returned, with what the error queue says about it; the queue
// is emptied.
func explained(fd uintptr, errno syscall.Errno) error {
	if e := sockerr.Drain(int(fd), errno); e != nil {
		return e
	}
	return errno
}

// queuedError is explained for a caller outside RawConn.Read and Write.
func (c *sysConn) queuedError(errno syscall.Errno) error {
	err := error(errno)
	_ = c.rc.Control(func(fd uintptr) { err = explained(fd, errno) })
	return err
}

// leftoverError is for a session socket that showed POLLERR and then had
// nothing to read. Either an ICMP error came just after the receive call
// (it is pending: its errno is returned, for the caller to explain and
// report), or a send took the pending error before the reader came and the
// queue holds entries already reported, dropped here (0 is returned). A
// queue left full would keep POLLERR up and fill the receive buffer, which
// it counts against, until replies were dropped.
func leftoverError(fd uintptr) syscall.Errno {
	pending, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil || pending == 0 {
		_ = sockerr.Drain(int(fd), 0)
		return 0
	}
	return syscall.Errno(pending)
}
