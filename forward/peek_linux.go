package forward

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peek copies the bytes waiting on socket fd into b without taking them
// off the socket (recv with MSG_PEEK, plus flags). It is a bare syscall so
// that it allocates nothing.
func peek(fd uintptr, b []byte, flags int) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])),
		uintptr(len(b)), uintptr(unix.MSG_PEEK|flags), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

const (
	peekDontWait = unix.MSG_DONTWAIT
	errAgain     = syscall.EAGAIN
)
