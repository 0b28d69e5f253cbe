package forward

import (
	"context"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
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
// timeout, the status page's live list) once it has lived parkAfter, or
// as soon as a read fills the buffer (a bulk flow: splice moves it with
// less CPU per byte). It is handed over as a pair parked bare
// (parker.adoptBare): two descriptors in the parker's epoll set, made
// into net.TCPConn only when bytes arrive. So an idle connection never
// holds a goroutine or a poll descriptor, not even during a burst.
//
// What a front connection does not have: a place in the live list (the
// engine's pairs are listed; a connection younger than parkAfter is not),
// and TLS, PROXY headers, raw mode and Handlers, whose listeners keep the
// engine's path from accept on (frontEligible).
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
	now     time.Time           // read once per loop turn
}

// frontGroup is one Listener's part of the front, owned by the loop.
type frontGroup struct {
	l          *Listener
	listens    int    // listen sockets registered
	young      fqueue // connections younger than parkAfter, in accept order
	kept       fqueue // older ones the front keeps (see keep)
	dialling   int    // connections waiting for their connect
	nextCheck  time.Time
	stopped    bool // the listener's context ended: connections end as they come
	registered bool // in front.groups
}

// frontListen is one listen socket in the loop's epoll set: a duplicate
// of the Listener's, so that the loop closes it on its own schedule.
type frontListen struct {
	g       *frontGroup
	index   int
	fd      int
	paused  time.Time // an accept failed: out of the epoll set until then
	backoff time.Duration
}

func newFront() (*front, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
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
		one := uint64(1)
		unix.Write(f.wakefd, (*[8]byte)(unsafe.Pointer(&one))[:])
	}
	return true
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
	one := uint64(1)
	unix.Write(f.wakefd, (*[8]byte)(unsafe.Pointer(&one))[:])
	<-f.done
}

// run is the loop: wait, handle what is ready, run the posted commands,
// then the timers.
func (f *front) run() {
	defer close(f.done)
	defer unix.Close(f.wakefd)
	defer unix.Close(f.epfd)
	for {
		n, err := unix.EpollWait(f.epfd, f.events, f.timeout())
		if err != nil && err != unix.EINTR {
			n = 0 // cannot happen with a valid set; the commands still run
		}
		f.now = time.Now()
		for i := 0; i < n; i++ {
			ev := &f.events[i]
			fd := int(ev.Fd)
			switch {
			case fd == f.wakefd:
				var b [8]byte
				unix.Read(f.wakefd, b[:])
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
			due(c.start.Add(g.l.parkAfter))
		}
		if g.dialling > 0 || g.kept.head != nil {
			due(g.nextCheck)
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
		after := g.l.parkAfter
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

// addListen registers a duplicate of a listen socket of g's listener.
func (f *front) addListen(g *frontGroup, index, fd int) {
	ln := &frontListen{g: g, index: index, fd: fd}
	for fd >= len(f.listens) {
		f.listens = append(f.listens, make([]*frontListen, max(len(f.listens), 8))...)
	}
	f.listens[fd] = ln
	g.listens++
	f.join(g)
	f.watchListen(ln)
}

// watchListen puts a listen socket into the epoll set, level-triggered:
// what acceptBatch leaves in the queue is reported again.
func (f *front) watchListen(ln *frontListen) {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(ln.fd)}
	if err := unix.EpollCtl(f.epfd, unix.EPOLL_CTL_ADD, ln.fd, &ev); err != nil {
		ln.g.l.log.Warn().Err(os.NewSyscallError("epoll_ctl", err)).
			Str("listen", ln.g.l.listens[ln.index]).Msg("accept paused")
		ln.paused = f.now.Add(time.Second)
	}
}

// removeListens closes g's listen socket duplicates; each one's
// accepting count goes down as it closes.
func (f *front) removeListens(g *frontGroup) {
	for fd, ln := range f.listens {
		if ln == nil || ln.g != g {
			continue
		}
		f.listens[fd] = nil
		unix.Close(fd) // leaves the epoll set with its last descriptor
		g.listens--
		g.l.accepting.Done()
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

// accept takes up to acceptBatch connections from ln.
func (f *front) accept(ln *frontListen) {
	l := ln.g.l
	for range acceptBatch {
		salen := uint32(unsafe.Sizeof(f.sa))
		r, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, uintptr(ln.fd),
			uintptr(unsafe.Pointer(&f.sa)), uintptr(unsafe.Pointer(&salen)),
			syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
		switch e {
		case 0:
		case syscall.EAGAIN:
			ln.backoff = 0
			return
		case syscall.EINTR, syscall.ECONNABORTED:
			continue
		default:
			f.pauseListen(ln, os.NewSyscallError("accept4", e))
			return
		}
		ln.backoff = 0
		fd := int(r)
		client := peerAddr(&f.sa)
		if ln.g.stopped || !l.admitFront(client, ln.index) {
			unix.Close(fd)
			continue
		}
		f.open(ln, fd, client)
	}
}

// pauseListen takes a listen socket whose accept failed (out of
// descriptors, most likely) out of the set for a back-off that doubles,
// as the engine's accept loop does.
func (f *front) pauseListen(ln *frontListen, err error) {
	l := ln.g.l
	if ln.backoff == 0 {
		l.log.Warn().Err(err).Str("listen", l.listens[ln.index]).Msg("accept failed, backing off")
	}
	ln.backoff = min(max(2*ln.backoff, minAcceptBackoff), maxAcceptBackoff)
	unix.EpollCtl(f.epfd, unix.EPOLL_CTL_DEL, ln.fd, nil)
	ln.paused = f.now.Add(ln.backoff)
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

// frontSockets duplicates the listen sockets for the front; nil when one
// cannot be (the engine accepts then, as it did before the front).
func frontSockets(lns []*net.TCPListener, log zerolog.Logger) []int {
	fds := make([]int, 0, len(lns))
	for _, ln := range lns {
		rc, err := ln.SyscallConn()
		fd := -1
		if err == nil {
			fd, err = dupFD(rc)
		}
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			log.Warn().Err(err).Msg("front unavailable, accepting through the engine")
			return nil
		}
		fds = append(fds, fd)
	}
	return fds
}

// closeFrontFDs closes the duplicates Serve did not hand to the front.
func (l *Listener) closeFrontFDs() {
	l.mu.Lock()
	fds := l.frontFDs
	l.frontFDs = nil
	l.mu.Unlock()
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// serveFront hands the listener's sockets to the front; false when there
// is none (the engine's accept loops serve then).
func (l *Listener) serveFront() bool {
	f := l.pool.front()
	l.mu.Lock()
	fds := l.frontFDs
	l.frontFDs = nil
	if f == nil || l.closed {
		l.mu.Unlock()
		for _, fd := range fds {
			unix.Close(fd)
		}
		return false
	}
	l.front = f
	l.mu.Unlock()
	g := &frontGroup{l: l}
	added := make(chan struct{})
	if !f.post(func() {
		for i, fd := range fds {
			f.addListen(g, i, fd)
		}
		close(added)
	}) {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return false
	}
	<-added
	context.AfterFunc(l.ctx, func() { f.post(func() { f.stop(g) }) })
	l.mu.Lock()
	l.fgroup = g
	closed := l.closed
	l.mu.Unlock()
	if closed { // stopAccepting ran before fgroup was there to see
		f.post(func() { f.removeListens(g) })
	}
	return true
}
