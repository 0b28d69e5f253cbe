package ftppassive

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

var errNoDataPort = errors.New("ftppassive: no free data port")

// portPool hands out relay-owned data ports. Ports are picked at random
// from the range, so a client cannot predict the next one (and so steal a
// neighbour's transfer by racing to it); a port stays taken from the moment
// its listener is opened until the transfer on it ends.
//
// The pool is one bitmap of at most 65536 entries (8 KiB of bools); picking
// scans from a random start, O(range) at worst, which is nothing next to
// the bind that follows.
type portPool struct {
	first, last uint16        // inclusive; first == 0: the kernel picks (no limit)
	inUse       *atomic.Int64 // Stats.DataPortsInUse, the gauge

	mu   sync.Mutex // guards the following
	used []bool     // used[p-first]: handed out and not yet released
}

func newPortPool(r [2]uint16, inUse *atomic.Int64) *portPool {
	p := &portPool{first: r[0], last: r[1], inUse: inUse}
	if p.first != 0 {
		p.used = make([]bool, int(p.last)-int(p.first)+1)
	}
	return p
}

// dataKeepAlive is the keepalive of both sides of a data connection, the
// same as forward's connections: first probe after 30 s of silence, then
// every 10 s, the kernel's default count. A multi-GB transfer never goes
// silent, so probes cost it nothing; a peer that vanished mid-transfer is
// noticed within about two minutes instead of at the idle timeout, and its
// data port goes back to the pool. Count -1 leaves TCP_KEEPCNT alone,
// which saves a setsockopt on each socket over Go's default.
func dataKeepAlive() net.KeepAliveConfig {
	return net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 10 * time.Second, Count: -1}
}

// maxBindTries bounds how many free-looking ports listen tries when binds
// fail (another program on the box holds them).
const maxBindTries = 16

// listen opens a TCP listener on ip at a free port of the pool. The
// returned release gives the port back; call it once, after the listener
// and anything accepted on it are closed.
func (p *portPool) listen(ip netip.Addr) (ln *net.TCPListener, release func(), err error) {
	lc := net.ListenConfig{KeepAliveConfig: dataKeepAlive()}
	// Go makes listeners Multipath TCP by default; an accepted plain TCP
	// connection then sits behind MPTCP's fallback layer, and the socket
	// costs more to set up. FTP clients do not speak MPTCP.
	lc.SetMultipathTCP(false)
	if p.first == 0 {
		l, err := lc.Listen(context.Background(), "tcp", netip.AddrPortFrom(ip, 0).String())
		if err != nil {
			return nil, nil, fmt.Errorf("listen for data on %s: %w", ip, err)
		}
		p.inUse.Add(1)
		return l.(*net.TCPListener), sync.OnceFunc(func() { p.inUse.Add(-1) }), nil
	}
	var lastErr error
	for range maxBindTries {
		port, ok := p.take()
		if !ok {
			return nil, nil, errNoDataPort
		}
		l, err := lc.Listen(context.Background(), "tcp", netip.AddrPortFrom(ip, port).String())
		if err != nil {
			// Taken by someone else on this box (or a draining relay of
			// our own after a reload): try another one.
			p.put(port)
			lastErr = err
			continue
		}
		return l.(*net.TCPListener), sync.OnceFunc(func() { p.put(port) }), nil
	}
	return nil, nil, fmt.Errorf("%w: %d binds failed, the last: %w", errNoDataPort, maxBindTries, lastErr)
}

// take marks a random free port used.
func (p *portPool) take() (uint16, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.used)
	start := rand.IntN(n)
	for i := range n {
		j := (start + i) % n
		if !p.used[j] {
			p.used[j] = true
			p.inUse.Add(1)
			return p.first + uint16(j), true
		}
	}
	return 0, false
}

func (p *portPool) put(port uint16) {
	p.mu.Lock()
	p.used[port-p.first] = false
	p.mu.Unlock()
	p.inUse.Add(-1)
}
