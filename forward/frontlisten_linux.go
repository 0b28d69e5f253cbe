package forward

import (
	"context"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// frontListen is one listen socket in the loop's epoll set: a duplicate
// of the Listener's, so that the loop closes it on its own schedule.
type frontListen struct {
	g       *frontGroup
	index   int
	fd      int
	paused  time.Time // an accept failed: out of the epoll set until then
	backoff time.Duration
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
	if err := rawEpollCtl(f.epfd, unix.EPOLL_CTL_ADD, ln.fd, &ev); err != nil {
		ln.g.l.log.Warn().Err(err).
			Str("listen", ln.g.l.listens[ln.index]).Msg("accept paused")
		ln.paused = f.now.Add(time.Second)
	}
}

// removeListens closes g's listen socket duplicates; each one's
// accepting count goes down as it closes.
//
// The registration is deleted before the close: it belongs to the open
// socket, not to the descriptor, and the socket lives on after a reload
// (the successor's) or an upgrade (the new process's). Left in the set,
// it would report every connection meant for them, level-triggered: a
// wake-up each, and a spinning loop while one waits in the backlog.
func (f *front) removeListens(g *frontGroup) {
	for fd, ln := range f.listens {
		if ln == nil || ln.g != g {
			continue
		}
		f.listens[fd] = nil
		ln.endBackoff()
		rawEpollCtl(f.epfd, unix.EPOLL_CTL_DEL, fd, nil) // ENOENT while paused
		rawClose(fd)
		g.listens--
		g.l.accepting.Done()
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
			ln.endBackoff()
			return
		case syscall.EINTR, syscall.ECONNABORTED:
			continue
		default:
			f.pauseListen(ln, os.NewSyscallError("accept4", e))
			return
		}
		ln.endBackoff()
		fd := int(r)
		client := f.peer(fd)
		if ln.g.stopped || !l.admitFront(client, ln.index) {
			rawClose(fd)
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
	l.stats.AcceptErrors.Add(1)
	if ln.backoff == 0 {
		l.stats.AcceptBackingOff.Add(1)
		l.log.Warn().Err(err).Str("listen", l.listens[ln.index]).Msg("accept failed, backing off")
	}
	ln.backoff = min(max(2*ln.backoff, minAcceptBackoff), maxAcceptBackoff)
	rawEpollCtl(f.epfd, unix.EPOLL_CTL_DEL, ln.fd, nil)
	ln.paused = f.now.Add(ln.backoff)
}

// endBackoff ends ln's back-off, if it is in one: an accept succeeded or
// found the queue empty, or the socket leaves the front.
func (ln *frontListen) endBackoff() {
	if ln.backoff > 0 {
		ln.g.l.stats.AcceptBackingOff.Add(-1)
		ln.backoff = 0
	}
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
		if err == nil {
			// Accepted sockets inherit TCP_NODELAY from the listen
			// socket (a setsockopt per connection spared). Set here, not
			// at bind: a socket handed over by an older relay has none.
			if err = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
				rawClose(fd)
				err = os.NewSyscallError("setsockopt", err)
			}
		}
		if err != nil {
			closeFDs(fds)
			log.Warn().Err(err).Msg("front unavailable, accepting through the engine")
			return nil
		}
		fds = append(fds, fd)
	}
	return fds
}

// closeFDs closes every descriptor of fds.
func closeFDs(fds []int) {
	for _, fd := range fds {
		rawClose(fd)
	}
}

// closeFrontFDs closes the duplicates Serve did not hand to the front.
func (l *Listener) closeFrontFDs() {
	l.mu.Lock()
	fds := l.frontFDs
	l.frontFDs = nil
	l.mu.Unlock()
	closeFDs(fds)
}

// serveFront hands the listener's sockets to the front; false when there
// is none (the engine's accept loops serve then).
func (l *Listener) serveFront() bool {
	l.mu.Lock()
	f := l.frontHold // held since Listen, which said why when it could not be
	fds := l.frontFDs
	l.frontFDs = nil
	if f == nil || l.parker == nil || l.closed { // the front hands idle pairs to the parker
		l.mu.Unlock()
		closeFDs(fds)
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
		closeFDs(fds)
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
