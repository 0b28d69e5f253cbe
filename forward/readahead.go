package forward

import (
	"crypto/tls"
	"net"
	"time"
)

// readAhead finds out whether a TLS client that waits in a raw queue and
// then closes its socket has sent a job. crypto/tls reads the socket in
// large reads, so the handshake may have taken the client's first records
// (its job, even its close_notify) off the socket along with its Finished;
// then the socket the hang-up watch peeks holds only the FIN, which alone
// would mean "left the queue". A nil readAhead (a plaintext client) has
// nothing read ahead.
type readAhead struct {
	tc      *tls.Conn
	asked   bool
	pending []byte // application data read to find out; the pipe gets it first
}

// newReadAhead returns the readAhead of c, nil unless c is TLS.
func newReadAhead(c net.Conn) *readAhead {
	if tc, ok := c.(*tls.Conn); ok {
		return &readAhead{tc: tc}
	}
	return nil
}

// sent reports whether the TLS conn holds application data it has already
// read off the socket. It asks once, with a read that may not wait: a
// record already buffered is decrypted without touching the socket.
func (r *readAhead) sent() bool {
	if r == nil {
		return false
	}
	if !r.asked {
		r.asked = true
		buf := make([]byte, 16<<10) // one TLS record's plaintext at most
		r.tc.SetReadDeadline(time.Unix(1, 0))
		n, _ := r.tc.Read(buf)
		r.tc.SetReadDeadline(time.Time{})
		r.pending = buf[:n]
	}
	return len(r.pending) > 0
}

// conn returns c, or, when sent read data out of it, c with that data
// first.
func (r *readAhead) conn(c net.Conn) net.Conn {
	if r == nil || len(r.pending) == 0 {
		return c
	}
	return &replayConn{Conn: r.tc, pending: r.pending}
}

// replayConn is a TLS client whose first bytes were read by readAhead.
type replayConn struct {
	*tls.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
