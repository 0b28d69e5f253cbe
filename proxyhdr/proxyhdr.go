// Package proxyhdr writes and reads the PROXY protocol header (HAProxy's
// proxy-protocol.txt, versions 1 and 2) that carries a client's original
// address across a proxy: Append puts one in front of what the relay sends
// an upstream, Need and Parse take one off a connection from a trusted
// front load balancer.
//
// Writing is done here, by hand, because it runs once per forwarded
// connection and must not allocate: github.com/pires/go-proxyproto builds a
// Header and a byte slice per call (2 allocations and 620 ns against none
// and 35 ns, BenchmarkAppend), and the tests (FuzzAppend) check every byte
// Append writes against that library. Reading is the
// library's: Parse hands it the exact bytes of one header.
//
// Where its job ends: the package does no I/O. Need says how many bytes a
// header has from its first bytes, so the caller can take exactly the
// header off a socket and leave the payload for splice(2).
package proxyhdr

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	proxyproto "github.com/pires/go-proxyproto"
)

// Errors of Need and Parse.
var (
	ErrNotHeader = errors.New("proxyhdr: not a PROXY protocol header")
	ErrTooLong   = errors.New("proxyhdr: PROXY header too long")
)

// Sizes of headers.
const (
	// MaxV1 is the longest version 1 header, CRLF included.
	MaxV1 = 107
	// MaxAppend is the longest header Append writes (v1 with IPv6).
	MaxAppend = MaxV1
	// MaxV2 is the longest version 2 header Need accepts: the 16 fixed
	// bytes and up to 4 KiB of addresses and TLVs, as go-proxyproto.
	MaxV2 = 16 + 4096
)

// v2sig opens every version 2 header.
var v2sig = [12]byte{'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n'}

const v1sig = "PROXY "

// Header is what a received header says.
type Header struct {
	Version byte
	// Local is set for a header the front sent on its own behalf (a v2
	// LOCAL command, a v1 UNKNOWN): it carries no client, and the
	// connection's own addresses stand.
	Local bool
	// Source is the original client, Dest the address it connected to.
	// Both are invalid when Local is set.
	Source, Dest netip.AddrPort
}

// Append appends a header of version (1 or 2) saying that src connected
// to dst over TCP. src and dst must be of one family (an IPv4-mapped IPv6
// address counts as IPv4); otherwise, or with an invalid address, v1 says
// UNKNOWN and v2 says LOCAL, as the specification asks of a proxy that
// cannot tell.
func Append(b []byte, version int, src, dst netip.AddrPort) []byte {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	known := src.Addr().IsValid() && dst.Addr().IsValid() && src.Addr().Is4() == dst.Addr().Is4()
	if version == 1 {
		return appendV1(b, known, src, dst)
	}
	return appendV2(b, known, src, dst)
}

func appendV1(b []byte, known bool, src, dst netip.AddrPort) []byte {
	b = append(b, v1sig...)
	switch {
	case !known:
		return append(b, "UNKNOWN\r\n"...)
	case src.Addr().Is4():
		b = append(b, "TCP4 "...)
	default:
		b = append(b, "TCP6 "...)
	}
	b = src.Addr().AppendTo(b)
	b = append(b, ' ')
	b = dst.Addr().AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(src.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(dst.Port()), 10)
	return append(b, '\r', '\n')
}

func appendV2(b []byte, known bool, src, dst netip.AddrPort) []byte {
	b = append(b, v2sig[:]...)
	if !known {
		return append(b, 0x20, 0x00, 0, 0) // v2 LOCAL, UNSPEC, no addresses
	}
	if src.Addr().Is4() {
		b = append(b, 0x21, 0x11, 0, 12) // v2 PROXY, TCP over IPv4
		s, d := src.Addr().As4(), dst.Addr().As4()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
	} else {
		b = append(b, 0x21, 0x21, 0, 36) // v2 PROXY, TCP over IPv6
		s, d := src.Addr().As16(), dst.Addr().As16()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// Need looks at the first bytes of a connection and returns the length of
// the header they start, or 0 if more bytes are needed to tell. It returns
// ErrNotHeader when they cannot start a header and ErrTooLong when the
// header would be longer than MaxV1 or MaxV2.
func Need(b []byte) (int, error) {
	if n := min(len(b), len(v2sig)); bytes.Equal(b[:n], v2sig[:n]) {
		if len(b) < 16 {
			return 0, nil
		}
		total := 16 + int(binary.BigEndian.Uint16(b[14:16]))
		if total > MaxV2 {
			return 0, ErrTooLong
		}
		return total, nil
	}
	if n := min(len(b), len(v1sig)); string(b[:n]) == v1sig[:n] {
		if i := bytes.IndexByte(b[:min(len(b), MaxV1)], '\n'); i >= 0 {
			return i + 1, nil
		}
		if len(b) >= MaxV1 {
			return 0, ErrTooLong
		}
		return 0, nil
	}
	return 0, ErrNotHeader
}

// Starts reports whether b begins with a PROXY header's signature (the
// whole of it: "PROXY " or the 12 bytes of version 2).
func Starts(b []byte) bool {
	return bytes.HasPrefix(b, []byte(v1sig)) || bytes.HasPrefix(b, v2sig[:])
}

// Parse reads the one header that b holds, exactly: bytes left after it
// are an error. It accepts what go-proxyproto accepts, for TCP and UDP
// over IPv4 and IPv6; a header for a Unix socket is treated as Local.
func Parse(b []byte) (Header, error) {
	r := bufio.NewReaderSize(bytes.NewReader(b), max(len(b), 16))
	h, err := proxyproto.Read(r)
	switch {
	case errors.Is(err, proxyproto.ErrNoProxyProtocol):
		return Header{}, ErrNotHeader
	case err != nil:
		return Header{}, fmt.Errorf("proxyhdr: %w", err)
	case r.Buffered() > 0:
		return Header{}, fmt.Errorf("proxyhdr: %d bytes after the header", r.Buffered())
	}
	out := Header{Version: h.Version}
	if h.Command.IsLocal() || h.TransportProtocol.IsUnspec() || h.TransportProtocol.IsUnix() {
		out.Local = true
		return out, nil
	}
	src, srcOK := addrPort(h.SourceAddr)
	dst, dstOK := addrPort(h.DestinationAddr)
	if !srcOK || !dstOK {
		return Header{}, fmt.Errorf("proxyhdr: header without usable addresses (%v, %v)", h.SourceAddr, h.DestinationAddr)
	}
	out.Source, out.Dest = src, dst
	return out, nil
}

func addrPort(a net.Addr) (netip.AddrPort, bool) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		return netip.AddrPort{}, false
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	return ap, ap.Addr().IsValid()
}
