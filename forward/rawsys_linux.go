package forward

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readNow and writeNow are read(2) and write(2) on a nonblocking socket
// without the runtime's syscall bookkeeping (unix.Read and unix.Write go
// through entersyscall/exitsyscall). A call on a nonblocking socket never
// waits, so the scheduler gains nothing from handing the P to another
// thread meanwhile, and each handoff it does make (sysmon retakes a P that
// sits in a syscall for two of its ticks, 20 us and more on a busy 2-core
// box) costs a thread wake-up.
func readNow(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func writeNow(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// rawTCP reads and writes one TCP socket with read(2) and write(2)
// through readNow and writeNow inside its RawConn's callbacks, so that the
// netpoller still does the waiting (and the deadlines) while the calls
// skip the runtime's syscall bookkeeping. That bookkeeping is what wakes
// the runtime's monitor thread after every idle gap (entersyscall), and a
// TLS tunnel carrying a printer's request and answer is idle gaps and
// small reads: each side of it, the TLS socket under a recordConn and the
// plain socket a copying direction reads or writes (plainSides), goes
// through one. The zero value (raw nil) is not in use: callers fall back
// to the conn's own Read and Write.
type rawTCP struct {
	conn net.Conn
	raw  syscall.RawConn
	// rd and wr carry read's and write's call into the RawConn's
	// callback; one goroutine reads, and writes are serialised by the
	// owner (recordConn's mutex, or the one copying direction).
	rd, wr rawIO
}

// init makes s read and write c raw when c is a TCP socket; otherwise s
// stays unused.
func (s *rawTCP) init(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	s.conn, s.raw = c, rc
}

// rawIO is one read(2) or write(2) of a rawTCP through its RawConn.
// The callback is made once per socket and finds its buffer and results
// here: a closure made per call escapes to the heap, two allocations a
// record and, with a small heap, a collection every few thousand round
// trips of a printer's tunnel.
type rawIO struct {
	buf []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

// read is rawIO's callback for a read: one read(2), done unless it
// would wait.
func (op *rawIO) read(fd uintptr) bool {
	for {
		op.n, op.err = readNow(int(fd), op.buf)
		if op.err != unix.EINTR {
			return op.err != unix.EAGAIN
		}
	}
}

// write is rawIO's callback for a write: write(2) until all of buf is
// out (op.n counts it) or the socket would wait.
func (op *rawIO) write(fd uintptr) bool {
	for op.n < len(op.buf) {
		n, e := writeNow(int(fd), op.buf[op.n:])
		switch e {
		case nil:
			op.n += n
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			op.err = os.NewSyscallError("write", e)
			return true
		}
	}
	return true
}

// read is net.Conn's Read on the socket: one read(2), waiting in the
// netpoller while there is nothing to read.
func (s *rawTCP) read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	op := &s.rd
	if op.fn == nil {
		op.fn = op.read
	}
	op.buf, op.n, op.err = p, 0, nil
	err := s.raw.Read(op.fn)
	n, rerr := op.n, op.err
	op.buf = nil // the caller's buffer is not ours to hold
	switch {
	case err != nil: // a deadline or a closed conn
		return 0, s.opError("read", err)
	case rerr != nil:
		return 0, s.opError("read", os.NewSyscallError("read", rerr))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// write is net.Conn's Write on the socket: all of b, or an error.
func (s *rawTCP) write(b []byte) (int, error) {
	op := &s.wr
	if op.fn == nil {
		op.fn = op.write
	}
	op.buf, op.n, op.err = b, 0, nil
	err := s.raw.Write(op.fn)
	written, werr := op.n, op.err
	op.buf = nil
	if err == nil {
		err = werr
	}
	if err != nil {
		err = s.opError("write", err)
	}
	return written, err
}

// opError words an error as net.TCPConn's Read and Write do ("read tcp
// LOCAL->REMOTE: ..."), so that log lines read as before.
func (s *rawTCP) opError(op string, err error) error {
	// The RawConn's own errors come as "raw-read tcp ...": keep their
	// cause only.
	var raw *net.OpError
	if errors.As(err, &raw) {
		err = raw.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: s.conn.LocalAddr(), Addr: s.conn.RemoteAddr(), Err: err}
}
