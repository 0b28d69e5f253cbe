package forward

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"

	"github.com/edgerelay/relay/certs"
)

// recordConn is the socket under every tls.Conn of a listener. crypto/tls
// writes each record (16 KiB of plaintext at most) with a write(2) of its
// own, and a Read of a tls.Conn returns one record's plaintext. On a
// loopback or LAN hop each write(2) runs the receiver's network stack and
// wakes its reader, and on a virtual machine those wake-ups cost more than
// the encryption (perf: half of the relay's CPU in the tunnel bulk upload
// was the hypervisor's interrupt re-enable under those wake-ups, AES-GCM
// 12 %). So a direction of the pipe
//   - batches: the records of one tls.Conn.Write leave in one write(2)
//     (beginBatch, endBatch);
//   - gathers: after a Read that waited, it reads on from the tls.Conn only
//     while that needs no wait (noWait), so the plaintext of the records
//     already read off the socket leaves in one write to the plain side.
//
// Neither changes what TLS sends or when a byte is delivered: a batch is
// flushed before the Write that made it returns to the pipe, and a gather
// never waits for the socket.
type recordConn struct {
	net.Conn // the TCP socket (or what dialUpstream returned)
	// noWait makes Read fail with errWouldWait instead of reading the
	// socket. Only the goroutine reading the tls.Conn sets it, and only
	// that goroutine's tls.Conn.Read calls Read.
	noWait bool
	pool   *Pool
	// sock reads and writes Conn raw when it is a *net.TCPConn
	// (rawsys_linux.go); its reads come from the goroutine reading the
	// tls.Conn (see noWait), its writes under mu (Write, endBatch).
	sock rawTCP
	// shaken is set once the handshake is done (terminate, originate):
	// a batch opened before would hold back the handshake's own flight.
	shaken bool
	// verify, when set (terminate, a listener with AdmitTLS), is the
	// handshake's VerifyConnection (certs.ConnVerifier).
	verify func(tls.ConnectionState) error

	mu       sync.Mutex // guards the following
	batching bool       // Write appends to batch
	batch    *[]byte    // records of the Write being batched; pooled
	werr     error      // a flush failed: the stream may end mid-record, nothing more goes out
}

// errWouldWait ends a gathering read: the next record is not on hand.
// crypto/tls keeps a read error that is a net.Error with Temporary() for
// the next Read rather than failing the conn for good, as it does for a
// read deadline.
var errWouldWait error = wouldWait{}

type wouldWait struct{}

func (wouldWait) Error() string   { return "forward: the next TLS record would wait" }
func (wouldWait) Timeout() bool   { return true }
func (wouldWait) Temporary() bool { return true }

var _ net.Error = wouldWait{}

func newRecordConn(c net.Conn, pool *Pool) *recordConn {
	r := &recordConn{Conn: c, pool: pool}
	r.sock.init(c)
	return r
}

// TLSVerifier is certs.ConnVerifier: the ACL's check within the handshake.
func (r *recordConn) TLSVerifier() func(tls.ConnectionState) error { return r.verify }

var _ certs.ConnVerifier = (*recordConn)(nil)

// Read reads the socket, or fails with errWouldWait while noWait is set:
// crypto/tls asks only when the record it needs is not yet buffered.
func (r *recordConn) Read(p []byte) (int, error) {
	if r.noWait {
		return 0, errWouldWait
	}
	if r.sock.raw != nil {
		return r.sock.read(p)
	}
	return r.Conn.Read(p)
}

// Write sends b, or appends it to the batch while one is open.
func (r *recordConn) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.werr != nil {
		return 0, r.werr
	}
	if r.batching {
		*r.batch = append(*r.batch, b...)
		return len(b), nil
	}
	return r.write(b)
}

// write sends b on the socket.
func (r *recordConn) write(b []byte) (int, error) {
	if r.sock.raw != nil {
		return r.sock.write(b)
	}
	return r.Conn.Write(b)
}

// beginBatch makes the records crypto/tls writes from now on wait in a
// buffer for endBatch.
func (r *recordConn) beginBatch() {
	if !r.shaken {
		return
	}
	r.mu.Lock()
	r.batching = true
	if r.batch == nil {
		r.batch = r.pool.getBatch()
	}
	r.mu.Unlock()
}

// endBatch writes the batch in one go and gives its buffer back. A write
// from another goroutine of the tls.Conn (an alert, a KeyUpdate answer)
// that came meanwhile is in the batch in its place, or waits for the
// flush: the mutex is held across it so nothing overtakes the batch.
func (r *recordConn) endBatch() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batching = false
	if r.batch == nil {
		return nil
	}
	b := *r.batch
	if len(b) > 0 && r.werr == nil {
		_, r.werr = r.write(b)
	}
	*r.batch = b[:0]
	r.pool.putBatch(r.batch)
	r.batch = nil
	return r.werr
}

// recordConnOf returns the recordConn under a TLS conn of the pipe, nil
// for any other conn. Asked per chunk rather than kept in the direction,
// which would take the pair past its allocation size class.
func recordConnOf(c net.Conn) *recordConn {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		rc, _ := tc.NetConn().(*recordConn)
		return rc
	}
	return nil
}

// gather fills buf[n:] from a TLS src as far as no wait is needed, after a
// Read that returned n bytes. It returns the new count and the error that
// ended the gathering, nil when it stopped for want of a record on hand.
func (d *direction) gather(buf []byte, n int) (int, error) {
	rc := recordConnOf(d.src)
	if rc == nil {
		return n, nil
	}
	rc.noWait = true
	defer func() { rc.noWait = false }()
	for n < len(buf) {
		m, err := d.src.Read(buf[n:])
		n += m
		if err != nil {
			if errors.Is(err, errWouldWait) {
				return n, nil
			}
			return n, err
		}
	}
	return n, nil
}

// writeBatched is writeAll for a TLS dst whose records leave in one
// write(2). The bytes count once they left: a failed flush counts none.
func (d *direction) writeBatched(b []byte, plain *plainSides) error {
	rc := recordConnOf(d.dst)
	if rc == nil || !rc.shaken {
		return d.writeAll(b, plain)
	}
	if d.dstTLS {
		if err := d.armTLSWrite(); err != nil {
			return err
		}
	}
	rc.beginBatch()
	n, err := d.dst.Write(b)
	ferr := rc.endBatch()
	if ferr == nil {
		d.account(n)
	} else if err == nil {
		err = ferr
	}
	if err == nil {
		if d.dstTLS {
			d.disarmTLSWrite()
		}
		return nil
	}
	if d.dstTLS && isTimeout(err) {
		d.p.stop(EndIdle, nil) // as in writeAll: no retry
	}
	return err
}

// tlsBatchSize is the capacity a batch buffer starts with: a copy
// buffer's worth of records with their overhead.
const tlsBatchSize = copyBufferSize + 1024
