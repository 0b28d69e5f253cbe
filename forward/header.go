package forward

import (
	"errors"
	"net/netip"

	"github.com/edgerelay/relay/proxyhdr"
)

// proxyHeader is the PROXY header a pair sends upstream ahead of the
// client's bytes (Config.ProxyProtocol): version 0 sends none.
type proxyHeader struct {
	version     int
	client, dst netip.AddrPort
}

// errFlushHeader: the client had nothing to read while a PROXY header was
// waiting; the header goes out alone, so that an upstream that speaks
// first (and waits for the header to do so) is not held up.
var errFlushHeader = errors.New("forward: no client bytes to send the PROXY header with")

// holdHeader writes h into the direction's buffer, where the client's
// first bytes will be read in behind it: header and first bytes then leave
// in one write(2) and one TCP segment, instead of a write and a segment of
// their own for the header (BenchmarkConnRateEdge: the header's own write
// was most of the edge defences' cost per connection). The buffer comes
// from the pool like any read's, so this costs no allocation.
func (d *direction) holdHeader(h proxyHeader) {
	if h.version == 0 {
		return
	}
	if d.buf == nil {
		d.buf = d.pool.getBuffer()
	}
	d.hdr = uint8(len(proxyhdr.Append((*d.buf)[:0], h.version, h.client, h.dst)))
}

// flushHeaderConn writes a waiting PROXY header through dst's Write, for
// the copy path, which reads into a buffer of its own.
func (d *direction) flushHeaderConn() error {
	if d.hdr == 0 {
		return nil
	}
	h := int(d.hdr)
	d.hdr = 0
	_, err := d.dst.Write((*d.buf)[:h])
	d.releaseBuf()
	return err
}
