package forward

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// How a connection ended, the "end" field of the access line and
// Result.End.
const (
	EndEOF          = "eof"      // both directions reached EOF
	EndIdle         = "idle"     // nothing moved for the idle timeout
	EndReset        = "reset"    // a peer reset the connection
	EndTimeout      = "timeout"  // the kernel gave up on a peer (TCP_USER_TIMEOUT, keepalive)
	EndShutdown     = "shutdown" // the relay closed it (Shutdown past its grace, Close)
	EndError        = "error"    // any other I/O error; Result.Err says which
	EndRefused      = "refused"  // max_conns reached; closed at once
	EndUnreachable  = "upstream_unreachable"
	EndQueueTimeout = "queue_timeout" // raw: waited longer than QueueTimeout
	EndLeftQueue    = "left_queue"    // raw: the client hung up while waiting
	EndProxyHeader  = "proxy_header"  // a source not in AcceptProxy sent a PROXY header after connecting
)

// PipeOptions tunes Pipe. The zero value is usable.
type PipeOptions struct {
	// IdleTimeout ends the pipe when no byte moved either way for this long.
	// Zero: no idle timeout.
	IdleTimeout time.Duration
	// Progress, if set, is called with the size of every chunk moved, either
	// way, from the goroutine moving it (so from two goroutines at once);
	// it must be cheap, safe for concurrent use, and not block.
	Progress func(n int)
	// AtoB and BtoA, if set, are incremented by every chunk moved a->b and
	// b->a, as it is written, so counters are current while a long
	// connection runs.
	AtoB, BtoA *atomic.Uint64
	// Pool supplies splice pipes and copy buffers. nil: each Pipe makes its
	// own and closes them on return (two extra syscalls per direction).
	Pool *Pool

	// parker, when set (startPipe of a Listener), holds a direction that
	// found nothing to read after the pair was idle for parkAfter, without
	// its goroutine. Needs IdleTimeout > 0.
	parker    *parker
	parkAfter time.Duration
	// keepAliveB: b (the upstream) gets TCP keepalive once the pair
	// outlives parkAfter or parks; with a parker only.
	keepAliveB bool
	// checkFirst, if set, sees the first bytes read from a before any of
	// them is written to b; an error ends the pair without writing them.
	checkFirst firstChecker
	// live, when set, stops the pair when the listener's context ends,
	// in place of an AfterFunc of ctx per pair (see livePairs).
	live *livePairs
	// proxy, when its version is set, is the PROXY header b gets before
	// a's first bytes, in the same write when they are already there.
	proxy proxyHeader
}

// firstChecker looks at the first bytes a client sends (PipeOptions). An
// interface rather than a func: a *Listener in it costs no allocation per
// connection, a method value would.
type firstChecker interface {
	checkFirst(first []byte) error
}

// Result is what Pipe did.
type Result struct {
	AtoB, BtoA int64  // bytes moved a->b and b->a
	End        string // EndEOF, EndIdle, EndReset, EndTimeout, EndShutdown or EndError
	Err        error  // the error behind End, nil for eof, idle and shutdown
}

// Pipe moves bytes both ways between a and b until both directions end, then
// closes a and b. EOF from one side becomes CloseWrite on the other (a conn
// without CloseWrite is closed, which ends the pipe). Between two
// *net.TCPConn (or *net.UnixConn) the bytes move with splice(2) and never
// enter user space; other conns are copied through pooled buffers with the
// same accounting. Cancelling ctx ends the pipe with End "shutdown".
func Pipe(ctx context.Context, a, b net.Conn, opt PipeOptions) Result {
	p := newPair(ctx, a, b, opt)
	done := make(chan struct{})
	go p.ba.runAndSignal(done)
	p.ab.run()
	<-done
	return p.close()
}

// Start is Pipe without the wait: it returns at once, and end is called
// once, from another goroutine, with the result after a and b are closed.
// With opt.Pool and opt.IdleTimeout set, a direction that has had nothing
// to read for a second parks in the pool (see the package doc): an idle
// pipe holds no goroutine.
func Start(ctx context.Context, a, b net.Conn, opt PipeOptions, end func(Result)) {
	if opt.Pool != nil && opt.parker == nil {
		opt.parker, opt.parkAfter = opt.Pool.parker(), defaultParkAfter
	}
	startPipe(ctx, a, b, opt, end, false)
}

// startPipe is Pipe without the wait: the directions run in goroutines of
// their own and the one that ends last calls end with the result, after
// closing a and b.
//
// With inline set and a parker, the caller's goroutine runs a->b itself
// and returns once that direction ends or parks; otherwise it returns at
// once. The plain forward's connection worker sets it: one goroutine
// fewer to start per connection, and on two cores one thread wake-up
// fewer (BenchmarkConnRate/relay, alternated 4 times: 151-159 against
// 157-171 µs of relay CPU per connection, 34 allocations against 35).
// Without a parker both directions get fresh goroutines, because the
// dialling goroutine's stack (grown by the dial, 8 KiB and more) would
// stay with a connection that never parks (BenchmarkIdleFDs: 14.6 KiB
// RSS per idle connection when the dialling goroutine ran a direction,
// 8.6 KiB with both fresh); with a parker the direction gives that
// goroutine back to the worker pool when it parks.
func startPipe(ctx context.Context, a, b net.Conn, opt PipeOptions, end func(Result), inline bool) {
	p := newPair(ctx, a, b, opt)
	p.onEnd = end
	if p.parker != nil {
		p.parker.running.Add(2)
	}
	go p.ba.runDetached()
	if inline && p.parker != nil {
		p.ab.runDetached()
		return
	}
	go p.ab.runDetached()
}

func newPair(ctx context.Context, a, b net.Conn, opt PipeOptions) *pair {
	p := &pair{ctx: ctx, a: a, b: b, idle: opt.IdleTimeout, progress: opt.Progress}
	p.start = time.Now()
	if p.idle > 0 && opt.parker != nil {
		p.parker, p.parkAfter, p.keepAliveB = opt.parker, opt.parkAfter, opt.keepAliveB
	}
	p.grain = p.clockGrain()
	if p.idle > 0 {
		deadline := p.start.Add(p.wakeAfter(p.idle))
		setWaitDeadline(a, deadline)
		setWaitDeadline(b, deadline)
	}
	p.ab = p.initDirection(&p.dirs[0], a, b, opt.AtoB, opt.Pool)
	p.ab.check = opt.checkFirst
	p.ab.holdHeader(opt.proxy)
	p.ba = p.initDirection(&p.dirs[1], b, a, opt.BtoA, opt.Pool)
	if canSplice(a, b) {
		// One RawConn per conn, shared by the direction reading it and
		// the one writing it: SyscallConn allocates one on every call.
		ra, errA := a.(syscall.Conn).SyscallConn()
		rb, errB := b.(syscall.Conn).SyscallConn()
		if errA == nil && errB == nil {
			p.setRaw(ra, rb)
			p.bareOK.Store(p.parker != nil && !p.parker.noBare && isTCP(a) && isTCP(b))
		}
	}
	p.stopWith(opt.live)
	return p
}

// stopWith has the pair stopped when its context ends: through the
// listener's live list when given, else an AfterFunc of its own. A pair
// whose listener is already stopping is stopped at once.
func (p *pair) stopWith(live *livePairs) {
	if live == nil {
		p.stopOnCancel = context.AfterFunc(p.ctx, p.shutdown)
	} else if p.live = live; !p.live.add(p) {
		p.shutdown()
	}
}

// setRaw hands the directions the RawConns of a and b.
func (p *pair) setRaw(ra, rb syscall.RawConn) {
	p.ab.srcRaw, p.ab.dstRaw = ra, rb
	p.ba.srcRaw, p.ba.dstRaw = rb, ra
}

// shutdown is the AfterFunc of the pair's context.
func (p *pair) shutdown() { p.stop(EndShutdown, nil) }

// close ends a pair whose directions have both returned: it closes a and b
// and returns the result.
func (p *pair) close() Result {
	if p.live != nil {
		p.live.remove(p)
	} else {
		p.stopOnCancel()
	}
	// A direction that stop took over while it was parking may still be
	// in parker.park's epoll_ctl on its descriptor number. Closed before
	// that call lands, the number can go to a new socket, which the late
	// call then registers with the parker for nobody, and the first park
	// on that number fails (EEXIST): that connection never parks
	// (TestCloseWaitsForParkRegistration).
	p.ab.settle()
	p.ba.settle()
	end, err := p.result()
	if p.a != nil { // nil when the pair ended parked bare
		if err != nil && p.ba.moved == 0 {
			err = refusalBehind(p.b, err)
		}
		p.a.Close()
		p.b.Close()
	}
	return Result{AtoB: p.ab.moved, BtoA: p.ba.moved, End: end, Err: err}
}

// pair is the state both directions of one Pipe share.
type pair struct {
	ctx          context.Context
	a, b         net.Conn
	ab, ba       *direction   // &dirs[0] and &dirs[1]
	dirs         [2]direction // in the pair: one allocation for all three
	stopOnCancel func() bool  // unregisters the AfterFunc of ctx; nil with live
	live         *livePairs   // stops the pair instead of an AfterFunc; nil under Pipe
	prev, next   *pair        // in live's list, guarded by live.mu
	onEnd        func(Result) // startPipe's end; nil under Pipe
	idle         time.Duration
	progress     func(int)
	start        time.Time
	// grain is how stale last may be (clockGrain). Storing only when the
	// time moved by a grain keeps the two directions from bouncing one
	// cache line on every chunk; the idle and park checks are off by at
	// most a grain.
	grain time.Duration
	last  atomic.Int64 // time.Duration since start of the last chunk, either way

	stopped atomic.Bool  // set before the deadlines that wake the directions
	ended   atomic.Int32 // directions that have returned

	parker       *parker       // nil: directions never park (Pipe, or no idle timeout)
	parkAfter    time.Duration // how long the pair is idle before a direction parks
	keepAliveB   bool          // b still needs keepalive (see lateKeepAlive)
	wokeBare     bool          // the pair has woken from a bare park (see direction.park)
	keepAliveSet atomic.Bool
	// bareOK: both conns are plain TCP and parking bare has not failed,
	// so the pair may park bare (bare_linux.go). Atomic: the sweep
	// reads it for pairs it does not own.
	bareOK atomic.Bool

	mu sync.Mutex // guards the following
	// a and b above are written under mu too, once the pair exists:
	// parking bare takes them away and waking puts new ones back,
	// while stop may read them from another goroutine.
	end string
	err error
}

// clockGrain is the pair's grain: min(idle/16, 1 s), and no more than
// parkAfter/16 when the pair may park. The park check (quietFor against
// parkAfter) needs the finer one: with a grain of parkAfter (the
// defaults: 1 h and 1 s), last could be a whole parkAfter stale, so a
// pair with an exchange every 200 ms looked quiet for parkAfter whenever
// a wake-up deadline fired just before the exchange that stored it, and
// went bare; its wake then set the deadlines to fire again exactly there,
// and it paid a bare park and wake (about 60 syscalls) every second
// (TestBusyPairNeverParks; BENCHMARKS.md, "Busy pairs and the park
// clock"). A store every parkAfter/16 (62.5 ms) costs nothing measurable
// even for a bulk transfer, which moves a chunk every few microseconds.
func (p *pair) clockGrain() time.Duration {
	g := min(p.idle/16, time.Second)
	if p.parker != nil && p.parkAfter > 0 {
		g = min(g, p.parkAfter/16)
	}
	return g
}

// sweepGrain is the least wait between two looks of the parker's sweep
// at the pair: min(idle/16, 1 s), coarser than its clock's grain where
// that is finer for the park check, so that the sweep, which walks every
// parked direction, still runs about once a second at most.
func (p *pair) sweepGrain() time.Duration {
	return min(p.idle/16, time.Second)
}

// touch records activity; called per chunk. time.Since reads the
// monotonic clock through the vDSO, no syscall.
func (p *pair) touch() {
	if p.idle <= 0 {
		return
	}
	now := int64(time.Since(p.start))
	if now-p.last.Load() >= int64(p.grain) {
		p.last.Store(now)
	}
}

// idleLeft returns how long until the pair counts as idle; <= 0 means it is.
// A direction whose deadline fired asks this before giving up, because the
// other direction may have been busy all along: deadlines are re-armed only
// when they fire, not per chunk, which keeps timer updates (a lock and a
// timer-heap change in the runtime each) out of the hot path: one re-arm
// per idle period instead of one per chunk.
func (p *pair) idleLeft() time.Duration {
	last := time.Duration(p.last.Load())
	return last + p.idle - time.Since(p.start)
}

// stop ends the pair for reason: the first reason sticks, and both conns
// get a past deadline so every direction wakes up from the poller.
func (p *pair) stop(reason string, err error) {
	p.mu.Lock()
	// A cancel that lands after both directions returned does not
	// relabel a finished pipe.
	if p.end == "" && p.ended.Load() < 2 {
		p.end, p.err = reason, err
	}
	// Set under the lock that restoreBare takes to put the conns back:
	// either its conns are the ones read here, or it sees the flag.
	p.stopped.Store(true)
	a, b := p.a, p.b // nil while the pair is parked bare
	p.mu.Unlock()
	if a != nil {
		past := time.Unix(1, 0)
		a.SetDeadline(past)
		b.SetDeadline(past)
	}
	if p.parker != nil {
		// A parked direction has no goroutine for the deadline to wake.
		p.parker.wake(p.ab)
		p.parker.wake(p.ba)
	}
}

// fail ends the pair because of an I/O error.
func (p *pair) fail(err error) {
	if p.ctx.Err() != nil {
		p.stop(EndShutdown, nil)
		return
	}
	p.stop(classify(err), err)
}

func (p *pair) result() (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.end == "" {
		return EndEOF, nil
	}
	return p.end, p.err
}

// waitExpired handles a deadline that fired while a direction waited on c.
// It returns true when the direction should go on waiting (the deadline was
// an idle check and the pair is not idle yet) after re-arming it.
func (p *pair) waitExpired(c net.Conn, read bool) bool {
	if p.stopped.Load() || p.idle <= 0 {
		return false
	}
	p.lateKeepAlive()
	left := p.idleLeft()
	if left <= 0 {
		p.stop(EndIdle, nil)
		return false
	}
	wait := left
	if read {
		wait = p.wakeAfter(left)
	}
	deadline := time.Now().Add(wait)
	if read {
		c.SetReadDeadline(deadline)
	} else {
		c.SetWriteDeadline(deadline)
	}
	// stop sets the flag before its past deadline, so either we see the
	// flag here or its deadline lands after ours.
	return !p.stopped.Load()
}

// classify names an I/O error for the access log.
func classify(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ECONNABORTED):
		return EndReset
	case errors.Is(err, syscall.ETIMEDOUT):
		return EndTimeout
	case errors.Is(err, net.ErrClosed):
		return EndShutdown
	case errors.Is(err, errLateProxyHeader):
		return EndProxyHeader
	}
	return EndError
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// direction moves one way, src -> dst.
type direction struct {
	state   atomic.Int32 // dirRunning or dirParked: who owns the fields below
	adding  atomic.Int32 // epoll_ctl calls of parks under way (see direction.settle)
	parkFD  int32        // src's descriptor, set at the first park (int32: packed beside state, the pair fits the 640-byte size class, not 704)
	inEpoll bool         // src is registered with the parker
	noPark  bool         // parking failed: wait in the poller from now on
	dstTLS  bool         // dst is TLS: each write carries the idle timeout (armTLSWrite)
	hdr     uint8        // bytes of a PROXY header at the front of buf, not yet written (header.go)

	p        *pair
	src, dst net.Conn
	counter  *atomic.Uint64
	pool     *Pool
	moved    int64        // bytes written to dst
	check    firstChecker // PipeOptions.checkFirst until the first read; then nil
	// srcRaw and dstRaw are src's and dst's RawConn when both can
	// splice (made once per pair); nil otherwise.
	srcRaw, dstRaw syscall.RawConn

	// RawConn callback state, see splice_linux.go
	op   ioOp                  // what call does
	call func(fd uintptr) bool // d.do, made once: every RawConn callback of the direction

	// splice state, see splice_linux.go
	sb         *spliceBuf // the pipe while the direction holds one
	serr       error      // error of the last splice or read call
	spliceUsed bool       // a splice has moved bytes; no fallback after that

	// read(2) state of the first, small chunks, see splice_linux.go
	buf      *[]byte // the buffer while the direction holds one
	nread    int     // bytes in buf after the last read
	nwritten int     // of those, bytes written to dst
}

func (p *pair) initDirection(d *direction, src, dst net.Conn, counter *atomic.Uint64, pool *Pool) *direction {
	d.p, d.src, d.dst, d.counter, d.pool = p, src, dst, counter, pool
	d.dstTLS = p.idle > 0 && isTLS(dst)
	return d
}

// ioOp says what the direction's RawConn callback (do, splice_linux.go)
// runs.
type ioOp uint8

// errSpliceUnsupported makes a direction fall back to the buffer copy.
var errSpliceUnsupported = errors.New("forward: splice not supported for these conns")

// run moves bytes until EOF or the pair stops. It reports whether this
// was the last direction of the pair to return.
func (d *direction) run() (last bool) {
	err := d.move()
	for err == errWouldPark {
		if d.park() {
			return false // its goroutine ends; the parker resumes it
		}
		d.noPark = true
		err = d.move()
	}
	if err != nil && !d.p.stopped.Load() {
		d.p.fail(err) // recorded while this direction still counts as running
	}
	last = d.p.ended.Add(1) == 2
	if err == nil && !last {
		// When this is the last direction, both conns are closed now:
		// close sends the FIN that CloseWrite would, one syscall less
		// per connection.
		d.finish()
	}
	return last
}

// move runs the copy loop until EOF, an error or errWouldPark.
func (d *direction) move() error {
	err := errSpliceUnsupported
	if canSplice(d.src, d.dst) {
		err = d.splice()
	}
	if err == errSpliceUnsupported {
		err = d.copy()
	}
	return err
}

// runAndSignal is Pipe's second direction: run, then close done.
func (d *direction) runAndSignal(done chan<- struct{}) {
	defer close(done)
	d.run()
}

// runDetached is a direction of startPipe: the last one to return ends
// the pair.
func (d *direction) runDetached() {
	last := d.run()
	if pk := d.p.parker; pk != nil {
		pk.running.Add(-1) // parked or ended: its goroutine ends here
	}
	if last {
		d.p.onEnd(d.p.close())
	}
}

// finish passes EOF on: CloseWrite on dst, or, if dst cannot half-close,
// the end of the whole pair.
func (d *direction) finish() {
	if cw, ok := d.dst.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil && !d.p.stopped.Load() {
			d.p.fail(err)
		}
		return
	}
	d.p.stop(EndEOF, nil)
}

// account records n bytes written to dst.
func (d *direction) account(n int) {
	d.moved += int64(n)
	if d.counter != nil {
		d.counter.Add(uint64(n))
	}
	if d.p.progress != nil {
		d.p.progress(n)
	}
	d.p.touch()
}

// copy is the fallback: read into a pooled buffer, write it all out.
func (d *direction) copy() error {
	if err := d.flushHeaderConn(); err != nil {
		return err
	}
	bp := d.pool.getBuffer()
	defer d.pool.putBuffer(bp)
	buf := *bp
	// The plain TCP side of a TLS pair is read or written raw, as the
	// TLS side is under its recordConn (rawTCP).
	plain := new(plainSides)
	plain.src.init(d.src)
	plain.dst.init(d.dst)
	for {
		n, rerr := plain.readSrc(d.src, buf)
		if n > 0 && rerr == nil {
			n, rerr = d.gather(buf, n)
		}
		if n > 0 {
			if err := d.checked(buf[:n]); err != nil {
				return err
			}
			if err := d.writeBatched(buf[:n], plain); err != nil {
				return err
			}
		}
		switch {
		case rerr == nil:
		case rerr == io.EOF:
			return nil
		case isTimeout(rerr) && d.p.waitExpired(d.src, true):
		default:
			return rerr
		}
	}
}

// releaseBuf gives the buffer back to the pool; without a pool the
// direction keeps it, to spare an allocation per read.
func (d *direction) releaseBuf() {
	if d.buf != nil && d.pool != nil {
		d.pool.putBuffer(d.buf)
		d.buf = nil
	}
}

// checked runs the pair's check on the direction's first bytes read, once.
func (d *direction) checked(first []byte) error {
	if d.check == nil {
		return nil
	}
	check := d.check
	d.check = nil
	return check.checkFirst(first)
}

// plainSides are the src and dst of a copying direction as plainSides:
// in use for a side that is a plain *net.TCPConn.
type plainSides struct{ src, dst rawTCP }

// readSrc reads src, raw when it is plain TCP.
func (s *plainSides) readSrc(src net.Conn, b []byte) (int, error) {
	if s.src.raw != nil {
		return s.src.read(b)
	}
	return src.Read(b)
}

// writeDst writes b to dst, raw when it is plain TCP.
func (s *plainSides) writeDst(dst net.Conn, b []byte) (int, error) {
	if s.dst.raw != nil {
		return s.dst.write(b)
	}
	return dst.Write(b)
}

func (d *direction) writeAll(b []byte, plain *plainSides) error {
	for len(b) > 0 {
		if d.dstTLS {
			if err := d.armTLSWrite(); err != nil {
				return err
			}
		}
		n, err := plain.writeDst(d.dst, b)
		if n > 0 {
			d.account(n)
			b = b[n:]
		}
		if err != nil && d.dstTLS && isTimeout(err) {
			// crypto/tls makes a write timeout permanent: no retry.
			d.p.stop(EndIdle, nil)
			return err
		}
		if err != nil && !(isTimeout(err) && d.p.waitExpired(d.dst, false)) {
			return err
		}
	}
	if d.dstTLS {
		d.disarmTLSWrite()
	}
	return nil
}

// armTLSWrite gives the next write into a TLS dst the whole idle timeout.
// A TLS conn gets no wake-up write deadline (setWaitDeadline), so without
// this a write whose peer stopped reading would block for good once the
// other direction has ended and no reader is left to find the pair idle
// (TestTLSStuckWriteEndsAtIdle). A write that takes the whole idle
// timeout moved at most one buffer in it: the pair is as good as idle.
func (d *direction) armTLSWrite() error {
	d.dst.SetWriteDeadline(time.Now().Add(d.p.idle))
	// stop sets the flag before its past deadline, so either we see the
	// flag here or its deadline lands after ours.
	if d.p.stopped.Load() {
		return net.ErrClosed
	}
	return nil
}

// disarmTLSWrite takes the idle timeout armTLSWrite gave a write into TLS
// off the socket once that write is done. crypto/tls also writes on its
// own, from the goroutine reading the conn (the answer to the peer's
// KeyUpdate, an alert), under the same socket deadline: one left over
// from the last write failed that answer once this direction had been
// quiet for the idle timeout, and crypto/tls then keeps its old read key,
// so the peer's next record ended the connection with "bad record MAC"
// (TestTLSKeyUpdateAfterQuietWrites).
func (d *direction) disarmTLSWrite() {
	d.dst.SetWriteDeadline(time.Time{})
	// stop sets the flag before its past deadline, so either we see the
	// flag here and put the past deadline back, or its deadline lands
	// after ours.
	if d.p.stopped.Load() {
		d.dst.SetWriteDeadline(time.Unix(1, 0))
	}
}
