package forward

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// errDeviceDown tells a waiting client that the device failed for the
// client before it.
var errDeviceDown = errors.New("forward: device unreachable")

// turnQueue gives one client at a time the device of a port; the others
// wait in arrival order. Queues are short (a few box-office workstations),
// so a slice with removal from the middle is the simple right choice.
type turnQueue struct {
	mu      sync.Mutex // guards the following
	busy    bool       // a client holds the turn
	waiting []*ticket
	holder  Holder // who holds the turn, for the status page; zero when idle or not yet known
	// owner is the raw state of the listener whose client holds the
	// turn: a reload's successor shares the queue (rawState.shareTurns).
	owner *rawState
}

// Holder is the client that holds a device in exclusive raw mode.
type Holder struct {
	Client netip.AddrPort
	Since  time.Time // when its turn came
}

// hold records client of owner's listener as the holder of the turn it
// was just given.
func (q *turnQueue) hold(owner *rawState, client netip.AddrPort) {
	q.mu.Lock()
	q.holder, q.owner = Holder{Client: client, Since: time.Now()}, owner
	q.mu.Unlock()
}

// current returns the holder if a client of owner's listener holds the
// turn; ok false when the device is idle or another listener's client has
// it.
func (q *turnQueue) current(owner *rawState) (Holder, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.holder, q.busy && q.holder.Client.IsValid() && q.owner == owner
}

// ticket is one client's place in the queue.
type ticket struct {
	ready   chan error // receives nil on the client's turn, or errDeviceDown
	granted bool       // guarded by turnQueue.mu
}

// join queues a client; granted reports that the device was free.
func (q *turnQueue) join() (t *ticket, granted bool) {
	t = &ticket{ready: make(chan error, 1)}
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.busy {
		q.busy, t.granted = true, true
		return t, true
	}
	q.waiting = append(q.waiting, t)
	return t, false
}

// release passes the turn to the next waiting client, if any.
func (q *turnQueue) release(*ticket) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.holder, q.owner = Holder{}, nil
	if len(q.waiting) == 0 {
		q.busy = false
		return
	}
	next := q.waiting[0]
	q.waiting[0] = nil
	q.waiting = q.waiting[1:]
	next.granted = true
	next.ready <- nil
}

// leave takes a client out of the queue; if its turn had just come, the
// turn passes on.
func (q *turnQueue) leave(t *ticket) {
	q.mu.Lock()
	if t.granted {
		q.mu.Unlock()
		q.release(t)
		return
	}
	for i, w := range q.waiting {
		if w == t {
			q.waiting = append(q.waiting[:i], q.waiting[i+1:]...)
			break
		}
	}
	q.mu.Unlock()
}

// failWaiting closes the queue's waiting clients out: the device did not
// answer the client that had the turn.
func (q *turnQueue) failWaiting() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, t := range q.waiting {
		t.ready <- errDeviceDown
	}
	q.waiting = nil
}

// waitTurn waits until c may use the device, and returns its ticket, or
// the end reason when c does not get there: queue timeout, the client
// hung up, the device is down, or shutdown.
func (l *Listener) waitTurn(c *net.TCPConn, q *turnQueue, ahead *readAhead) (*ticket, string) {
	t, granted := q.join()
	if granted {
		return t, ""
	}
	start := time.Now()
	l.stats.QueueLength.Add(1)
	defer func() {
		l.stats.QueueLength.Add(-1)
		l.stats.QueuedTotal.Add(1)
		l.stats.QueueWaitNanos.Add(uint64(time.Since(start)))
	}()

	gone := make(chan bool, 1)
	go watchHangup(c, gone)
	timer := time.NewTimer(l.raw.cfg.queueTimeout())
	defer timer.Stop()
	for {
		select {
		case err := <-t.ready:
			hungUp := stopWatch(c, gone) && !ahead.sent()
			switch {
			case err != nil:
				return nil, EndUnreachable
			case hungUp:
				q.release(t)
				return nil, EndLeftQueue
			}
			return t, ""
		case hungUp := <-gone:
			if hungUp && !ahead.sent() {
				q.leave(t)
				return nil, EndLeftQueue
			}
			// The watcher could not watch, or the client closed after a
			// job TLS had read ahead: wait without it.
			gone = nil
		case <-timer.C:
			q.leave(t)
			stopWatch(c, gone)
			l.stats.QueueTimeouts.Add(1)
			return nil, EndQueueTimeout
		case <-l.ctx.Done():
			q.leave(t)
			stopWatch(c, gone)
			return nil, EndShutdown
		}
	}
}

// stopWatch ends watchHangup with a past read deadline and reports whether
// it had seen the client hang up; the deadline is cleared for the pipe.
func stopWatch(c *net.TCPConn, gone chan bool) bool {
	if gone == nil {
		return false
	}
	c.SetReadDeadline(time.Unix(1, 0))
	hungUp := <-gone
	c.SetReadDeadline(time.Time{})
	return hungUp
}

// watchHangup waits, through the poller, until the waiting client c hangs
// up, and sends true then; it sends false when stopped by a read deadline
// or when it cannot watch. It only peeks: bytes the client sends while it
// waits are its job and stay in the socket buffer. A client that sent
// bytes and then closed is not treated as gone: a fire-and-forget sender
// (nc, a raw print spooler) closes after its job, and the job is printed
// when its turn comes.
func watchHangup(c *net.TCPConn, gone chan<- bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		gone <- false
		return
	}
	var one [1]byte
	hungUp := false
	rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
			return false // nothing yet: wait for the next event
		case err != nil, n == 0:
			hungUp = true // reset, or EOF with nothing sent
			return true
		}
		// Job bytes are waiting; the next event (more bytes, or the FIN
		// after them) wakes us up again.
		return false
	})
	gone <- hungUp
}
