package forward

import (
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The front: where a plain tcp connection spends its first second.
//
// Most connections through a forwarder are short: connect, a request, an
// answer, close. Run through the engine (a connection worker, Go's
// net.Conn, the netpoller and a goroutine per direction) such a
// connection costs about 27 syscalls and several goroutine hand-offs
// between the two threads of a small box, which on two cores is as much
// CPU as the kernel's own TCP work. The front serves it instead from one
// edge-triggered epoll loop per Pool with raw non-blocking sockets:
// accept4, the ACL, per-source limits and max_conns, a non-blocking
// connect to the upstream the listener's upstream.Set chooses (failover
// included), read and write through one 16 KiB buffer, half-close,
// byte accounting and the access line, all on the loop's goroutine.
//
// A connection leaves the front for the engine (splice, parking, idle
// timeout, the status page's live list) once it has lived parkAfter (or
// the idle timeout, when that is shorter), or as soon as a read fills the
// buffer (a bulk flow: splice moves it with less CPU per byte). It is
// handed over as a pair parked bare
// (parker.adoptBare): two descriptors in the parker's epoll set, made
// into net.TCPConn only when bytes arrive. So an idle connection never
// holds a goroutine or a poll descriptor, not even during a burst.
//
// A Listener holds the front from Listen until its Close or Shutdown has
// taken its listen sockets out and its connections have left (finished,
// or handed to the engine); the last to let go stops the loop
// (Pool.releaseFront), so nothing of the front outlives the listeners
// that used it. A command a listener posts after letting go (the stop
// its context's end sends) finds the loop closed and is dropped: by then
// the listener has nothing left there.
//
// Listeners with TLS, PROXY headers, raw mode, a Handler (FTP), a
// dialer of their own or an upstream given by name (whose DNS lookup
// would stop the loop) keep the engine's path from accept on
// (frontEligible).
//
// Measured in bench/ceiling, a minimal loop of this kind: one loop for
// the whole process spent 0.5-0.6x the CPU per connection of a loop per
// core (which pays the scheduler's hand-off of a P blocked in
// epoll_wait), and 0.45x the engine's.

// frontBufSize is the loop's one read buffer. A read that fills it marks
// the connection bulk.
const frontBufSize = 16 << 10

// frontTick is how often the loop looks at connect deadlines and at
// connections it keeps past parkAfter (connecting, half-closed, writes
// pending), while it has any.
const frontTick = 100 * time.Millisecond

// acceptBatch bounds the connections taken from one listen socket per
// readiness report, so that a flood on one port does not starve the
// connections already open (the listen sockets are level-triggered).
const acceptBatch = 16

// front is one event loop serving the young connections of every eligible
// listener of a Pool. Only its goroutine (run) touches the fields after
// mu's; others talk to it through post.
type front struct {
	epfd   int
	wakefd int // eventfd: post writes it so that the loop reads its commands
	done   chan struct{}

	mu     sync.Mutex // guards the following
	cmds   []func()
	closed bool

	// Owned by the loop goroutine:
	conns   []*fconn       // by descriptor: the connection on it, or nil
	listens []*frontListen // by descriptor: the listen socket, or nil
	groups  []*frontGroup  // listeners with a listen socket or a connection here
	free    []*fconn
	gen     uint32 // of the last connection opened
	buf     []byte
	events  []unix.EpollEvent
	sa      unix.RawSockaddrAny // accept4's peer address
	zones   zoneNames           // link-local clients' interface names (peer)
	now     time.Time           // read once per loop turn
	ep      *os.File            // the epoll set, waited for in the netpoller
	rc      syscall.RawConn     // ep's
	armed   time.Time           // ep's read deadline; zero: none
}

// frontGroup is one Listener's part of the front, owned by the loop.
type frontGroup struct {
	l          *Listener
	listens    int    // listen sockets registered
	young      fqueue // connections younger than parkAfter, in accept order
	kept       fqueue // older ones the front keeps (see aged)
	dialling   int    // connections waiting for their connect
	nextCheck  time.Time
	stopped    bool // the listener's context ended: connections end as they come
	registered bool // in front.groups
}

// handAfter is how long a young connection stays in the front: parkAfter,
// or the idle timeout when that is shorter, since the front does not time
// young connections' idleness (the engine counts it from the last bytes,
// which it is handed).
func (g *frontGroup) handAfter() time.Duration {
	return min(g.l.parkAfter, g.l.cfg.idleTimeout())
}

func newFront() (*front, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// Nonblocking, so that os.NewFile hands the set to the netpoller.
	if err := unix.SetNonblock(ep, true); err != nil {
		unix.Close(ep)
		return nil, os.NewSyscallError("fcntl", err)
	}
	wfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ep)
		return nil, os.NewSyscallError("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wfd)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wfd, &ev); err != nil {
		unix.Close(ep)
		unix.Close(wfd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	f := &front{epfd: ep, wakefd: wfd, done: make(chan struct{}),
		buf: make([]byte, frontBufSize), events: make([]unix.EpollEvent, 128)}
	f.ep = os.NewFile(uintptr(ep), "forward-front")
	if f.rc, err = f.ep.SyscallConn(); err != nil {
		f.ep.Close()
		unix.Close(wfd)
		return nil, err
	}
	go f.run()
	return f, nil
}

// post queues cmd for the loop; false when the front is closed (cmd will
// not run).
func (f *front) post(cmd func()) bool {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return false
	}
	first := len(f.cmds) == 0
	f.cmds = append(f.cmds, cmd)
	f.mu.Unlock()
	if first {
		f.wake()
	}
	return true
}

// wake makes the loop's wait return so that it runs the commands.
func (f *front) wake() {
	one := uint64(1)
	unix.Write(f.wakefd, (*[8]byte)(unsafe.Pointer(&one))[:])
}

// close ends the loop once every listener using it has stopped, and
// waits for it.
func (f *front) close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	f.cmds = append(f.cmds, nil) // nil: leave the loop
	f.mu.Unlock()
	f.wake()
	<-f.done
}

// run is the loop: wait, handle what is ready, run the posted commands,
// then the timers.
func (f *front) run() {
	defer close(f.done)
	defer unix.Close(f.wakefd)
	defer f.ep.Close()
	for {
		n := f.wait()
		f.now = time.Now()
		for i := 0; i < n; i++ {
			ev := &f.events[i]
			fd := int(ev.Fd)
			switch {
			case fd == f.wakefd:
				var b [8]byte
				syscall.RawSyscall(syscall.SYS_READ, uintptr(f.wakefd), uintptr(unsafe.Pointer(&b[0])), 8)
			case fd < len(f.conns) && f.conns[fd] != nil:
				// The generation tells a report for a connection ended
				// earlier in this batch from one for a new connection
				// on the same descriptor number.
				if c := f.conns[fd]; uint32(ev.Pad) == c.gen {
					f.handle(c, fd, ev.Events)
				}
			case fd < len(f.listens) && f.listens[fd] != nil:
				f.accept(f.listens[fd])
			}
		}
		if !f.commands() {
			return
		}
		f.timers()
	}
}

// wait returns the number of readiness reports in f.events, 0 when a
// timer is due or the wait was cut short.
//
// Why the netpoller: the loop could block in epoll_wait itself (a
// syscall, whose P the runtime hands off while it blocks) or through
// RawSyscall (which holds a P for good). Waiting for the epoll set in the
// netpoller, as the parker does, measured best: bench tcp-connrate,
// -runs 5, relay CPU per connection 104-113 us against 110-117 blocking
// and 120-124 polling first or raw, and 1.04-1.1x the connections per
// second of either (BENCHMARKS.md, "How the loop waits").
func (f *front) wait() int {
	if n := f.poll(); n > 0 {
		return n
	}
	f.arm(f.timeout())
	n := 0
	if err := f.rc.Read(func(uintptr) bool { n = f.poll(); return n > 0 }); err != nil {
		return 0 // the deadline: timers are due
	}
	return n
}

// poll collects what is ready without waiting. RawSyscall: epoll_wait
// with a zero timeout returns at once, so the runtime need not know.
func (f *front) poll() int {
	r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(f.epfd),
		uintptr(unsafe.Pointer(&f.events[0])), uintptr(len(f.events)), 0, 0, 0)
	if e != 0 {
		return 0
	}
	return int(r)
}

// arm sets the wait's deadline ms milliseconds ahead (none for -1). A
// deadline armed sooner is kept: the loop wakes early once, finds nothing
// due and arms the next; so the deadline moves once per timer that fires,
// not once per turn.
func (f *front) arm(ms int) {
	now := time.Now()
	pending := !f.armed.IsZero() && f.armed.After(now)
	if ms < 0 {
		if !f.armed.IsZero() && !pending { // expired: it would end every wait
			f.ep.SetReadDeadline(time.Time{})
			f.armed = time.Time{}
		}
		return
	}
	at := now.Add(time.Duration(ms) * time.Millisecond)
	if pending && !f.armed.After(at) {
		return
	}
	f.ep.SetReadDeadline(at)
	f.armed = at
}

// commands runs what post queued; false means leave the loop.
func (f *front) commands() bool {
	f.mu.Lock()
	cmds := f.cmds
	f.cmds = nil
	f.mu.Unlock()
	for _, cmd := range cmds {
		if cmd == nil {
			return false
		}
		f.now = time.Now()
		cmd()
	}
	return true
}

// timeout is how long the loop may wait for readiness, in milliseconds
// (-1: until something happens): until the oldest young connection is due
// for the engine, a connect deadline or kept connection needs a look, or a
// paused listen socket may accept again.
func (f *front) timeout() int {
	var next time.Time
	due := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, g := range f.groups {
		if c := g.young.head; c != nil {
			due(c.start.Add(g.handAfter()))
		}
		if g.dialling > 0 || g.kept.head != nil {
			if g.nextCheck.IsZero() { // not looked at yet
				due(f.now)
			} else {
				due(g.nextCheck)
			}
		}
	}
	for _, ln := range f.listens {
		if ln != nil && !ln.paused.IsZero() {
			due(ln.paused)
		}
	}
	if next.IsZero() {
		return -1
	}
	ms := (time.Until(next) + time.Millisecond - 1) / time.Millisecond
	return int(max(ms, 0))
}

// timers hands connections that reached parkAfter to the engine, ends
// those past their connect deadline or idle timeout, and resumes paused
// listen sockets.
func (f *front) timers() {
	for _, g := range f.groups {
		after := g.handAfter()
		for c := g.young.head; c != nil && f.now.Sub(c.start) >= after; c = g.young.head {
			g.young.remove(c)
			f.aged(c)
		}
		if (g.dialling > 0 || g.kept.head != nil) && !f.now.Before(g.nextCheck) {
			g.nextCheck = f.now.Add(frontTick)
			f.check(g)
		}
	}
	for _, ln := range f.listens {
		if ln != nil && !ln.paused.IsZero() && !f.now.Before(ln.paused) {
			ln.paused = time.Time{}
			f.watchListen(ln)
		}
	}
	f.dropIdleGroups()
}

// check walks a group's connections for connect deadlines (young and
// kept) and the kept ones for their idle timeout or a chance to go to
// the engine after all.
func (f *front) check(g *frontGroup) {
	for _, q := range []*fqueue{&g.young, &g.kept} {
		for c := q.head; c != nil; {
			next := c.next
			if !c.connected && f.now.After(c.deadline) {
				f.dialFailed(c, os.ErrDeadlineExceeded)
			} else if q == &g.kept {
				f.recheck(c)
			}
			c = next
		}
	}
}

// join lists g for the timers.
func (f *front) join(g *frontGroup) {
	if !g.registered {
		g.registered = true
		f.groups = append(f.groups, g)
	}
}

// dropIdleGroups forgets groups with nothing left in the loop.
func (f *front) dropIdleGroups() {
	kept := f.groups[:0]
	for _, g := range f.groups {
		if g.listens > 0 || g.young.head != nil || g.kept.head != nil {
			kept = append(kept, g)
		} else {
			g.registered = false
		}
	}
	clear(f.groups[len(kept):])
	f.groups = kept
}

// stop ends every connection of g now (the listener's context ended), and
// any that arrives later.
func (f *front) stop(g *frontGroup) {
	g.stopped = true
	for _, q := range []*fqueue{&g.young, &g.kept} {
		for c := q.head; c != nil; c = q.head {
			f.finish(c, EndShutdown, nil)
		}
	}
}

// fqueue is a list of connections linked through them.
type fqueue struct {
	head, tail *fconn
}

func (q *fqueue) push(c *fconn) {
	c.q, c.prev, c.next = q, q.tail, nil
	if q.tail != nil {
		q.tail.next = c
	} else {
		q.head = c
	}
	q.tail = c
}

func (q *fqueue) remove(c *fconn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		q.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		q.tail = c.prev
	}
	c.q, c.prev, c.next = nil, nil, nil
}
