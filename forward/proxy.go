package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/edgerelay/relay/proxyhdr"
	"github.com/edgerelay/relay/upstream"
)

// DefaultProxyHeaderTimeout is the zero value of Config.ProxyHeaderTimeout.
const DefaultProxyHeaderTimeout = 3 * time.Second

// errProxyHeaderTimeout says a trusted front sent no complete header in time.
var errProxyHeaderTimeout = errors.New("no complete PROXY header within the header timeout")

func (c *Config) proxyHeaderTimeout() time.Duration {
	if c.ProxyHeaderTimeout <= 0 {
		return DefaultProxyHeaderTimeout
	}
	return c.ProxyHeaderTimeout
}

// trustedFront reports whether a connection from addr must carry a PROXY
// header. The list is short (a few load balancers): a linear scan is
// cheaper than any index.
func (l *Listener) trustedFront(addr netip.Addr) bool {
	for _, p := range l.cfg.AcceptProxy {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// errLateProxyHeader ends the pipe of a source that is not a trusted front
// when its first bytes are a PROXY header (EndProxyHeader).
var errLateProxyHeader = errors.New("PROXY header from a source not in accept_proxy_protocol")

// firstCheck returns the check of a connection's first bytes for its pipe:
// on a listener that accepts PROXY headers, a source that is not a trusted
// front may not send one after connecting either (untrustedHeader catches
// only a header that came with the connection). The first read of the
// pipe passes through user space anyway (readSmall), so the check costs
// no system call and delays nothing: the upstream is dialled and a
// server-speaks-first protocol goes on while the client is silent. nil
// when there is nothing to check: no accept_proxy_protocol, a trusted
// front (its header is taken off before), or TLS (a header before the
// handshake fails it).
func (l *Listener) firstCheck(a accepted) firstChecker {
	if len(l.cfg.AcceptProxy) == 0 || a.front || l.cfg.TLS != nil {
		return nil
	}
	return l
}

// checkFirst is firstCheck's check: bytes that begin with a PROXY
// signature (all 6 bytes of "PROXY " or 12 of version 2) end the
// connection. What it cannot tell apart: a first read shorter than the
// signature (a header split by the network before its 6th or 12th byte
// reaches the upstream as payload), and a protocol whose payload begins
// with those very bytes ("PROXY " as a first command) from a source that
// is not a trusted front.
func (l *Listener) checkFirst(first []byte) error {
	if !proxyhdr.Starts(first) {
		return nil
	}
	l.stats.RejectedProxyHeader.Add(1)
	return errLateProxyHeader
}

// untrustedHeader reports whether a connection from a source that is not a
// trusted front already holds the start of a PROXY header. It looks without
// waiting: a server-speaks-first protocol must not be held up by a client
// that sends nothing, so a header that arrives later than the accept is
// not seen here. Missing it costs nothing but a log line: such a header is
// never believed, it reaches the upstream as payload (after the relay's own
// header, when it sends one).
func untrustedHeader(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var b [12]byte
	n := 0
	_ = rc.Read(func(fd uintptr) bool {
		n, _ = peek(fd, b[:], peekDontWait)
		return true
	})
	return n > 0 && proxyhdr.Starts(b[:n])
}

// readProxyHeader takes exactly one PROXY header off c, within the header
// timeout, and leaves what follows on the socket for the pipe. Every byte
// before a header's end belongs to the header, so it may be taken as it
// comes: each round peeks at what has arrived, works out how much of it is
// header (proxyhdr.Need) and reads that much. A round takes at least a
// byte, or waits, so nothing spins; a sender that stops short is seen at
// its EOF or at the deadline.
func (l *Listener) readProxyHeader(c *net.TCPConn) (proxyhdr.Header, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return proxyhdr.Header{}, err
	}
	c.SetReadDeadline(time.Now().Add(l.cfg.proxyHeaderTimeout()))
	defer c.SetReadDeadline(time.Time{})
	// Close, and Shutdown past its grace, end the wait as they end a TLS
	// handshake: waited out, a silent front held Close for the header
	// timeout.
	stop := context.AfterFunc(l.ctx, func() { c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 0, 256)
	for {
		n, err := peekSome(rc, buf[len(buf):cap(buf)])
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return proxyhdr.Header{}, errProxyHeaderTimeout
		case err != nil:
			return proxyhdr.Header{}, err
		case n == 0:
			return proxyhdr.Header{}, fmt.Errorf("connection closed after %d bytes of a PROXY header", len(buf))
		}
		need, err := proxyhdr.Need(buf[:len(buf)+n])
		if err != nil {
			return proxyhdr.Header{}, err
		}
		take := n
		if need > 0 {
			take = min(n, need-len(buf))
		}
		if _, err := io.ReadFull(c, buf[len(buf):len(buf)+take]); err != nil {
			return proxyhdr.Header{}, err
		}
		buf = buf[:len(buf)+take]
		if need > 0 && len(buf) == need {
			return proxyhdr.Parse(buf)
		}
		if need > cap(buf) || len(buf) == cap(buf) {
			buf = append(make([]byte, 0, max(need, 2*cap(buf))), buf...) // a v2 header with long TLVs
		}
	}
}

// peekSome waits until bytes are there to read, or EOF, and copies them to
// b without taking them off the socket. 0 means EOF.
func peekSome(rc syscall.RawConn, b []byte) (int, error) {
	var n int
	var perr error
	err := rc.Read(func(fd uintptr) bool {
		n, perr = peek(fd, b, 0)
		return !errors.Is(perr, errAgain)
	})
	if err != nil {
		return 0, err
	}
	return n, perr
}

// admitFromFront runs, in a connWorker, the checks admit left for a
// connection from a trusted front: its header, then the ACL and the
// per-source limits on the client it names. On false the connection was
// closed, counted and logged, and its slot given back.
func (l *Listener) admitFromFront(a *accepted) bool {
	h, err := l.readProxyHeader(a.c)
	if err != nil {
		a.c.Close()
		// A wait that Close or Shutdown cut short was no bad header:
		// neither the metric nor the log counts the relay stopping.
		if l.ctx.Err() == nil {
			l.stats.RejectedProxyHeader.Add(1)
			l.logRefusal(a.client, "proxy_header: "+err.Error())
		}
		l.dropSlot()
		return false
	}
	if !h.Local {
		a.client, a.local = h.Source, h.Dest
	}
	if !l.check(a.c, a.client) {
		l.dropSlot()
		return false
	}
	if l.cfg.TLS == nil {
		l.stats.Accepted.Add(1) // a TLS client counts once its handshake is done
	}
	return true
}

// dropSlot gives back the max_conns slot of a connection closed before it
// was accepted.
func (l *Listener) dropSlot() {
	l.held.Add(-1)
	l.stats.Active.Add(-1)
	l.conns.Done()
}

// dialFor dials the upstream of an admitted connection, sending it the
// PROXY header of Config.ProxyProtocol first if set: the client, and the
// address it connected to. The header is built in a pooled buffer, so it
// costs no allocation.
//
// Without upstream TLS the header is not sent here but returned, for the
// pipe to send with the client's first bytes (direction.holdHeader); under
// upstream TLS it must precede the handshake.
func (l *Listener) dialFor(a accepted) (net.Conn, *upstream.Target, proxyHeader, error) {
	if l.cfg.ProxyProtocol == 0 {
		c, t, err := l.dialUpstream(a.index, nil)
		return c, t, proxyHeader{}, err
	}
	local := a.local
	if !local.IsValid() {
		if ta, ok := a.c.LocalAddr().(*net.TCPAddr); ok {
			local = ta.AddrPort()
		}
	}
	h := proxyHeader{version: l.cfg.ProxyProtocol, client: a.client, dst: local}
	if l.cfg.UpstreamTLS == nil {
		c, t, err := l.dialUpstream(a.index, nil)
		return c, t, h, err
	}
	bp := l.headers.Get().(*[proxyhdr.MaxAppend]byte)
	defer l.headers.Put(bp)
	c, t, err := l.dialUpstream(a.index, proxyhdr.Append(bp[:0], h.version, h.client, h.dst))
	return c, t, proxyHeader{}, err
}

// sendHeader writes a PROXY header to an upstream just dialled; on failure
// it closes the connection.
func sendHeader(up net.Conn, header []byte) error {
	if _, err := up.Write(header); err != nil {
		up.Close()
		return fmt.Errorf("send PROXY header: %w", err)
	}
	return nil
}
