//go:build unix

package ftppassive

import (
	"net"
	"syscall"
)

// setOOBInline keeps TCP urgent data in the normal byte stream. Clients
// send the Telnet DM of "IAC IP IAC DM ABOR" as urgent data; without this
// option the kernel takes that byte out of the stream and the relay would
// not pass the sequence on byte for byte.
func setOOBInline(c *net.TCPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_OOBINLINE, 1)
	})
}
