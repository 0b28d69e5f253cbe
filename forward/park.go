package forward

import (
	"net"
	"time"
)

// defaultParkAfter is how long a pair moves nothing before a direction
// that finds nothing to read gives its goroutine up (see parker). Short
// connections (a request and an answer) end before it and never pay for
// a park; a connection that has been quiet this long is likely to stay
// quiet much longer, which is where the goroutines' memory adds up.
const defaultParkAfter = time.Second

// wakeAfter bounds a read wait of a pair that may park: the wait ends
// after parkAfter, so that a direction still quiet then can park.
func (p *pair) wakeAfter(d time.Duration) time.Duration {
	if p.parker != nil && p.parkAfter > 0 {
		return min(d, p.parkAfter)
	}
	return d
}

// mayPark reports whether a direction whose source has nothing to read
// should park rather than wait in the poller.
func (d *direction) mayPark(fd uintptr) bool {
	p := d.p
	if p.parker == nil || d.noPark || p.stopped.Load() {
		return false
	}
	if p.quietFor() < p.parkAfter && !p.parker.crowded() {
		return false
	}
	if d.parkFD != int32(fd) {
		d.parkFD = int32(fd) // the same every time after the first
	}
	return true
}

// park hands the direction to the parker. It reports whether the
// direction is gone (parked, or taken over by the goroutine that woke it);
// false means the caller still owns it and must run it on.
func (d *direction) park() bool {
	p, pk := d.p, d.p.parker
	p.lateKeepAlive()
	// The callback is made again on waking: 16 bytes a connection
	// less while parked.
	d.call = nil
	// A pair parked crowded (young, maybe busy) goes bare once; after it
	// woke from that, only when quiet for parkAfter: a busy pair that
	// parks between request and answer would pay a bare wake (about 60
	// syscalls) on every exchange.
	if p.bareOK.Load() && (!p.wokeBare || p.quietFor() >= p.parkAfter) {
		if peer := d.peer(); pk.unpark(peer) {
			// Both directions are idle, and this goroutine owns them
			// both now: hold the pair as two bare descriptors.
			if pk.parkBare(p) {
				return true
			}
			pk.repark(peer) // nothing was changed: as it was
		}
	}
	err := pk.park(d)
	if err == nil && !p.stopped.Load() {
		return true
	}
	if err == errParkerClosed {
		// Refused before d was marked parked: nobody else can take it,
		// so the caller runs it on (waiting in the poller), as
		// parker.close promises a late park does.
		return false
	}
	// The park failed, or stop ran meanwhile and may have missed the
	// parked state: take the direction back, unless someone else did.
	return !pk.unpark(d)
}

// lateKeepAlive turns on TCP keepalive on the upstream (b) of a pair that
// has lived past parkAfter, once. Its deadline fires then in any case
// (wakeAfter), so no timer of its own is needed; a connection that ends
// sooner, most of them, spares the three setsockopt calls.
func (p *pair) lateKeepAlive() {
	if !p.keepAliveB || p.keepAliveSet.Swap(true) {
		return
	}
	if tc, ok := tcpOf(p.b).(*net.TCPConn); ok {
		tc.SetKeepAliveConfig(upstreamKeepAlive())
	}
}

// quietFor is how long the pair has moved no byte (within its grain,
// parkAfter/16 at most: see clockGrain).
func (p *pair) quietFor() time.Duration {
	return time.Since(p.start) - time.Duration(p.last.Load())
}

// peer is the pair's other direction.
func (d *direction) peer() *direction {
	if d == d.p.ab {
		return d.p.ba
	}
	return d.p.ab
}

// isTCP reports whether c is a plain TCP conn, which a pair parked bare
// can make again from its descriptor (net.FileConn).
func isTCP(c net.Conn) bool {
	_, ok := c.(*net.TCPConn)
	return ok
}
