package forward

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// bigPipeSize is the pipe size a Pool asks for while its budget lasts.
// Measured with BenchmarkPipeSize (bench_test.go) on loopback: 1 MiB pipes
// cost about half the relay CPU per byte of 64 KiB pipes (fewer
// fill/drain rounds and poller wake-ups per byte), 256 KiB sit between.
const bigPipeSize = 1 << 20

// maxSpliceChunk is the length asked of one socket->pipe splice. The kernel
// stops earlier when the pipe's slots are full or the socket is drained, so
// asking for more than the pipe holds costs nothing.
const maxSpliceChunk = 1 << 20

const spliceFlags = unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK

// rawSplice is splice(2) without telling the Go scheduler that the thread
// enters a system call (RawSyscall6, as the front and the small-chunk path
// do for read and write). Every descriptor here is nonblocking, so the
// call never waits for room or bytes. But on loopback a pipe->socket
// splice runs the receiver's TCP input too and often outlasts the
// runtime monitor's 20 µs tick; through entersyscall the monitor then
// hands the P to another thread, which has to be woken, and the returning
// thread goes to sleep. With iperf3 -P 8 that was 2.9-3.5 sleeps of relay
// threads per MB against 1.2-1.6 raw (HAProxy 0.15-2.4), and the relay
// trailed HAProxy there.
//
// The cost: a goroutine keeps its P for the call, as for the same time
// spent in Go code, so when the kernel makes a call wait on a socket's
// lock the P waits with it. Taken out once (d5f1670) because the bench's
// own 8 streams were slower in four pairs on a busy machine; five
// alternated pairs on a quiet one (BENCHMARKS.md, "The raw splice, on a
// quiet machine") put it ahead of HAProxy under both loads in every run,
// at 8-15 % less CPU per GB, with the bench's 8 streams inside the runs'
// spread.
func rawSplice(in, out, n int) (int64, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), spliceFlags)
	if e != 0 {
		return 0, e
	}
	return int64(r), nil
}

// spliceBuf is one kernel pipe used as the buffer of a direction; n counts
// the bytes in it.
type spliceBuf struct {
	r, w int
	n    int
	big  int // size set with F_SETPIPE_SZ, 0 for the kernel's default
}

// newSpliceBuf makes a nonblocking pipe and, if size > 0, asks for that
// size. A refused size (EPERM: an unprivileged user near
// fs.pipe-user-pages-soft) leaves the default pipe and big == 0.
func newSpliceBuf(size int) (*spliceBuf, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	sb := &spliceBuf{r: fds[0], w: fds[1]}
	if size > 0 {
		if got, err := unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, size); err == nil && got >= size {
			sb.big = size
		}
	}
	return sb, nil
}

func (sb *spliceBuf) close() {
	unix.Close(sb.r)
	unix.Close(sb.w)
}

// canSplice reports whether bytes can go src -> pipe -> dst in the kernel.
func canSplice(src, dst net.Conn) bool {
	return isSpliceConn(src) && isSpliceConn(dst)
}

func isSpliceConn(c net.Conn) bool {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
		return true
	}
	return false
}

// splice moves src -> dst through a pipe until EOF. Both conns' fds stay
// nonblocking and the Go netpoller does the waiting: the socket->pipe
// splice runs inside src's RawConn.Read callback, which returns false on
// EAGAIN so that the poller parks the goroutine until src is readable; the
// pipe->socket splice runs inside dst's RawConn.Write callback the same way.
func (d *direction) splice() error {
	src, dst := d.srcRaw, d.dstRaw
	if src == nil || dst == nil {
		return errSpliceUnsupported
	}
	if err := d.readSmall(src, dst, true); err != errBulk {
		return err
	}
	defer d.releasePipe()
	for {
		err := d.rawRead(src, opFill)
		if err == nil {
			err = d.serr
		}
		if err != nil {
			if isTimeout(err) && d.p.waitExpired(d.src, true) {
				continue
			}
			if !d.spliceUsed && isUnsupported(err) {
				return errSpliceUnsupported
			}
			if errors.Is(err, errNoPipe) {
				// Out of pipes (the fd limit, most likely): the bytes
				// still move, through the buffer, rather than the
				// connection failing.
				return d.readSmall(src, dst, false)
			}
			return err
		}
		if d.sb.n == 0 {
			return nil // EOF
		}
		d.spliceUsed = true
		if err := d.pump(dst); err != nil {
			return err
		}
	}
}

// errBulk ends readSmall when a read filled the buffer.
var errBulk = errors.New("forward: bulk flow, move to splice")

// errNoPipe is fill's error when no pipe could be had.
var errNoPipe = errors.New("forward: no splice pipe")

// readSmall moves src -> dst with read(2) and write(2) through a pooled
// buffer until a read fills the buffer: then the flow is bulk, and it
// returns errBulk so that splice takes over (unless toBulk is false: the
// whole flow is copied). It returns nil at EOF.
//
// Why: most connections carry short requests and answers. For those a
// pipe only adds work: socket -> pipe -> socket is two splices where a
// read and a write do, plus taking and returning the pipe. As with the
// pipe, the buffer goes back to the pool while the source has nothing to
// read, so an idle connection holds none. Measured (BenchmarkRawStatusRTT,
// 1-byte round trips): median 24.5 -> 23.2 us. BenchmarkConnRate (one
// byte each way) did not move: its cost is connect, close and the
// scheduler, and a read plus a write is as many calls as two splices.
//
// The write goes through dst's RawConn callback (writeChunk), not
// net.Conn.Write: the deeper stdlib path grew every direction's stack to
// 4 KiB, and an idle connection kept it (BenchmarkIdleFDs: 12.7 KiB RSS
// per idle connection that way, 8.8 KiB with the callback).
func (d *direction) readSmall(src, dst syscall.RawConn, toBulk bool) error {
	defer d.releaseBuf()
	for {
		err := d.rawRead(src, opRead)
		if err == nil {
			err = d.serr
		}
		if err == errFlushHeader {
			err = d.flushHeader(dst)
			if err == nil {
				continue
			}
		}
		if err != nil {
			if isTimeout(err) && d.p.waitExpired(d.src, true) {
				continue
			}
			return err
		}
		hdr := int(d.hdr)
		if d.nread == hdr {
			return d.flushHeader(dst) // EOF: the header still goes out
		}
		if err := d.checked((*d.buf)[hdr:d.nread]); err != nil {
			return err
		}
		full := d.nread == len(*d.buf)
		if err := d.rawWrite(dst, opWrite); err != nil {
			return err
		}
		if full && toBulk {
			return errBulk
		}
	}
}

// writeChunk is the RawConn.Write callback of readSmall: write(2) what is
// left of the chunk; EAGAIN waits for room. Each write is counted as it
// lands in dst.
func (d *direction) writeChunk(fd uintptr) bool {
	d.serr = nil
	for d.nwritten < d.nread {
		n, err := writeNow(int(fd), (*d.buf)[d.nwritten:d.nread])
		switch err {
		case nil:
			d.nwritten += n
			if d.hdr > 0 { // the PROXY header is not the client's bytes
				h := min(n, int(d.hdr))
				d.hdr -= uint8(h)
				n -= h
			}
			if n > 0 {
				d.account(n)
			}
			continue
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		d.serr = os.NewSyscallError("write", err)
		return true
	}
	return true
}

// readChunk is the RawConn.Read callback of readSmall: one read(2). On
// EAGAIN the buffer goes back to the pool while the poller waits.
//
// A read that returns less than the buffer has taken all the data queued,
// yet the read after it is still needed before waiting: a FIN that came
// with the data (one edge-triggered wake-up for both) shows only as the
// next read's EOF, and no later edge would announce it. Writing the chunk
// from here and waiting at once (sparing that read, 2 of a short
// connection's 25 syscalls) hung such connections (TestRawHolders).
func (d *direction) readChunk(fd uintptr) bool {
	d.serr = nil
	if d.buf == nil {
		d.buf = d.pool.getBuffer()
	}
	off := int(d.hdr) // a PROXY header waiting at the front
	for {
		n, err := readNow(int(fd), (*d.buf)[off:])
		switch err {
		case nil:
			d.nread, d.nwritten = off+n, 0
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if off > 0 {
				d.serr = errFlushHeader // nothing to send it with
				return true
			}
			d.releaseBuf()
			if d.mayPark(fd) {
				d.serr = errWouldPark
				return true
			}
			return false
		}
		d.serr = os.NewSyscallError("read", err)
		return true
	}
}

// flushHeader writes a waiting PROXY header alone (readSmall).
func (d *direction) flushHeader(dst syscall.RawConn) error {
	if d.hdr == 0 {
		return nil
	}
	d.nread, d.nwritten = int(d.hdr), 0
	return d.rawWrite(dst, opWrite)
}

// pump empties the pipe into dst.
func (d *direction) pump(dst syscall.RawConn) error {
	return d.rawWrite(dst, opDrain)
}

const (
	opRead  ioOp = iota // readChunk
	opWrite             // writeChunk
	opFill              // fill
	opDrain             // drain
)

// do is the callback of every RawConn Read and Write of the direction; it
// runs d.op. Why one callback: a method value allocates, and handing
// d.readChunk, d.writeChunk and so on to each call cost four allocations
// per short connection; d.call is made once per direction.
func (d *direction) do(fd uintptr) bool {
	switch d.op {
	case opRead:
		return d.readChunk(fd)
	case opWrite:
		return d.writeChunk(fd)
	case opFill:
		return d.fill(fd)
	}
	return d.drain(fd)
}

// rawRead runs op on src once through the poller: it returns when the
// callback is done, or with the poller's error (deadline, closed).
func (d *direction) rawRead(src syscall.RawConn, op ioOp) error {
	if d.call == nil {
		d.call = d.do
	}
	d.op = op
	return src.Read(d.call)
}

// rawWrite runs the write callback op on dst until it is done, through
// idle-timeout re-arms.
func (d *direction) rawWrite(dst syscall.RawConn, op ioOp) error {
	if d.call == nil {
		d.call = d.do
	}
	d.op = op
	for {
		err := dst.Write(d.call)
		if err == nil {
			err = d.serr
		}
		if err == nil {
			return nil
		}
		if !(isTimeout(err) && d.p.waitExpired(d.dst, false)) {
			return err
		}
	}
}

// fill is the RawConn.Read callback: one splice socket -> pipe. The pipe is
// empty whenever fill runs, so EAGAIN means the socket is drained; the pipe
// then goes back to the pool while the poller waits, which is what keeps
// idle connections from holding pipes.
func (d *direction) fill(fd uintptr) bool {
	d.serr = nil
	if d.sb == nil {
		d.sb, d.serr = d.pool.getPipe()
		if d.serr != nil {
			d.serr = fmt.Errorf("%w: %w", errNoPipe, d.serr)
			return true
		}
	}
	for {
		n, err := rawSplice(int(fd), d.sb.w, maxSpliceChunk)
		switch err {
		case nil:
			d.sb.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			d.pool.putPipe(d.sb)
			d.sb = nil
			if d.mayPark(fd) {
				d.serr = errWouldPark
				return true
			}
			return false
		}
		d.serr = os.NewSyscallError("splice", err)
		return true
	}
}

// drain is the RawConn.Write callback: splice pipe -> socket until the pipe
// is empty or the socket's send buffer is full (EAGAIN: wait for room).
// Each chunk is counted as it lands in dst.
func (d *direction) drain(fd uintptr) bool {
	d.serr = nil
	for d.sb.n > 0 {
		n, err := rawSplice(d.sb.r, int(fd), d.sb.n)
		switch err {
		case nil:
			if n == 0 {
				d.serr = io.ErrNoProgress
				return true
			}
			d.sb.n -= int(n)
			d.account(int(n))
			continue
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		d.serr = os.NewSyscallError("splice", err)
		return true
	}
	return true
}

// releasePipe gives the pipe back when it is empty; a pipe that may still
// hold bytes (the direction failed mid-chunk) is closed instead.
func (d *direction) releasePipe() {
	if d.sb == nil {
		return
	}
	if d.sb.n == 0 {
		d.pool.putPipe(d.sb)
	} else {
		d.pool.dropPipe(d.sb)
	}
	d.sb = nil
}

func isUnsupported(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) ||
		errors.Is(err, unix.EOPNOTSUPP)
}
