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

// rawIOConn returns the RawConn recordConn reads and writes c through,
// nil unless c is a TCP socket.
func rawIOConn(c net.Conn) syscall.RawConn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// rawIO is one read(2) or write(2) of a recordConn through its RawConn.
// The callback is made once per conn and finds its buffer and results
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

// rawRead is recordConn.Read on its TCP socket: read(2) through readNow
// inside the RawConn's callback, so that the netpoller still does the
// waiting (and the deadlines) while the call itself skips the runtime's
// syscall bookkeeping. That bookkeeping is what wakes the runtime's
// monitor thread after every idle gap (entersyscall), and a TLS tunnel
// carrying a printer's request and answer is idle gaps and small reads.
func (r *recordConn) rawRead(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	op := &r.rd
	if op.fn == nil {
		op.fn = op.read
	}
	op.buf, op.n, op.err = p, 0, nil
	err := r.raw.Read(op.fn)
	n, rerr := op.n, op.err
	op.buf = nil // the caller's buffer is not ours to hold
	switch {
	case err != nil: // a deadline or a closed conn
		return 0, r.opError("read", err)
	case rerr != nil:
		return 0, r.opError("read", os.NewSyscallError("read", rerr))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// opError words an error as net.TCPConn's Read and Write do ("read tcp
// LOCAL->REMOTE: ..."), so that log lines read as before.
func (r *recordConn) opError(op string, err error) error {
	// The RawConn's own errors come as "raw-read tcp ...": keep their
	// cause only.
	var raw *net.OpError
	if errors.As(err, &raw) {
		err = raw.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: r.LocalAddr(), Addr: r.RemoteAddr(), Err: err}
}

// rawWrite is recordConn's write on its TCP socket, all of b, the same
// way as rawRead.
func (r *recordConn) rawWrite(b []byte) (int, error) {
	op := &r.wr
	if op.fn == nil {
		op.fn = op.write
	}
	op.buf, op.n, op.err = b, 0, nil
	err := r.raw.Write(op.fn)
	written, werr := op.n, op.err
	op.buf = nil
	if err == nil {
		err = werr
	}
	if err != nil {
		err = r.opError("write", err)
	}
	return written, err
}
