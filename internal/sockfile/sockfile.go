// Package sockfile duplicates a socket as an *os.File that can be handed to
// a successor (net.FileListener, SCM_RIGHTS) without side effects on the
// socket still in use. Its job ends at the duplicate.
//
// Why not net.TCPListener.File: the file it returns switches the socket to
// blocking mode as soon as anyone calls its Fd method, and net.FileListener
// and net.FilePacketConn do. O_NONBLOCK belongs to the open file
// description that every duplicate shares, in this process and in the one a
// binary upgrade started, so a listener still accepting on the old
// descriptor entered accept(2) in blocking mode and stayed there: its Close
// then waited for a connection that might never come (seen on an idle FTP
// listener during an upgrade). A file made by os.NewFile from a
// non-blocking descriptor keeps the mode alone.
package sockfile

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Dup returns a close-on-exec duplicate of c's socket, named name.
func Dup(c syscall.Conn, name string) (*os.File, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("dup %s: %w", name, derr)
	}
	return os.NewFile(uintptr(nfd), name), nil
}
