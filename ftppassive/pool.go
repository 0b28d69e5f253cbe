package ftppassive

import (
	"context"
	"errors"
	"fmt"
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
// its listener is opened until the transfer on it ends. Which ports are
// taken is kept in a Ports table, which may be shared with other proxies
// and with the process of a binary upgrade; picking scans it from a random
// start, O(range) at worst, which is nothing next to the bind that follows.
type portPool struct {
	ports *Ports        // nil: the kernel picks (no limit)
	inUse *atomic.Int64 // Stats.DataPortsInUse, this proxy's gauge
	// taken is told of a port of the range that another program holds
	// (its bind failed); relay's own processes never cause it, as they
	// share the table.
	taken func(port uint16, err error)
}

func newPortPool(ports *Ports, inUse *atomic.Int64, taken func(uint16, error)) *portPool {
	return &portPool{ports: ports, inUse: inUse, taken: taken}
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
	if p.ports == nil {
		l, err := lc.Listen(context.Background(), "tcp", netip.AddrPortFrom(ip, 0).String())
		if err != nil {
			return nil, nil, fmt.Errorf("listen for data on %s: %w", ip, err)
		}
		p.inUse.Add(1)
		return l.(*net.TCPListener), sync.OnceFunc(func() { p.inUse.Add(-1) }), nil
	}
	// Ports whose bind failed stay marked until the end, so that each try
	// is another port.
	var failed []uint16
	defer func() {
		for _, port := range failed {
			p.ports.put(port)
		}
	}()
	var lastErr error
	for range maxBindTries {
		port, ok := p.ports.take()
		if !ok {
			break
		}
		l, err := lc.Listen(context.Background(), "tcp", netip.AddrPortFrom(ip, port).String())
		if err != nil {
			// Taken by another program on this box: try another one.
			p.taken(port, err)
			failed = append(failed, port)
			lastErr = err
			continue
		}
		p.inUse.Add(1)
		return l.(*net.TCPListener), sync.OnceFunc(func() { p.ports.put(port); p.inUse.Add(-1) }), nil
	}
	if lastErr == nil {
		return nil, nil, errNoDataPort
	}
	return nil, nil, fmt.Errorf("%w: %d binds failed, the last: %w", errNoDataPort, len(failed), lastErr)
}
