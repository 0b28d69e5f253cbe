package forward

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
	"github.com/edgerelay/relay/limit"
	proxyproto "github.com/pires/go-proxyproto"
	"golang.org/x/sys/unix"
)

// headerBackend reads, on each connection, exactly want(conn) bytes, which
// must be the PROXY header the test expects, records what it got, then
// echoes the rest. It never calls t.Fatal: the test reads got.
type headerBackend struct {
	*world.Backend
	mu  sync.Mutex
	got [][]byte
}

func newHeaderBackend(t *testing.T, headerLen int) *headerBackend {
	hb := &headerBackend{}
	hb.Backend = world.NewBackend(t, func(c net.Conn) {
		hdr := make([]byte, headerLen)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := io.ReadFull(c, hdr)
		hb.mu.Lock()
		hb.got = append(hb.got, hdr[:n])
		hb.mu.Unlock()
		c.SetReadDeadline(time.Time{})
		world.Echo(c)
	})
	return hb
}

func (hb *headerBackend) headers() [][]byte {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	return append([][]byte(nil), hb.got...)
}

// v2Header is a version 2 header for TCP over IPv4, written out by hand
// from the specification, for the byte-for-byte checks.
func v2Header(src, dst netip.AddrPort) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n")
	b = append(b, 0x21, 0x11, 0x00, 12)
	s, d := src.Addr().As4(), dst.Addr().As4()
	b = append(b, s[:]...)
	b = append(b, d[:]...)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// unacked is the number of segments c sent that the peer has not
// acknowledged (TCP_INFO), or -1 if it cannot tell.
func unacked(c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	n := -1
	rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			n = int(info.Unacked)
		}
	})
	return n
}

// askedACL is an Admit hook that allows everyone and records whom it was
// asked about.
type askedACL struct {
	mu    sync.Mutex
	asked []netip.AddrPort
}

func (a *askedACL) admit(c netip.AddrPort) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked = append(a.asked, c)
	return true
}

func (a *askedACL) get() []netip.AddrPort {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]netip.AddrPort(nil), a.asked...)
}

func localPort(c net.Conn) uint16 { return c.LocalAddr().(*net.TCPAddr).AddrPort().Port() }

func relayPort(r *relay) uint16 { return r.Addrs()[0].(*net.TCPAddr).AddrPort().Port() }

// TestSendProxyHeader: the upstream reads, before any payload, the header
// naming the client (127.0.0.2 and its port) and the relay address it
// connected to, for v1 and v2, on tcp and raw listeners.
func TestSendProxyHeader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version int
		raw     bool
	}{{"v1", 1, false}, {"v2", 2, false}, {"v2 raw", 2, true}} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			// Ports of five digits keep the v1 header's length fixed.
			hdrLen := 28
			if tc.version == 1 {
				hdrLen = len("PROXY TCP4 127.0.0.2 127.0.0.1 12345 12345\r\n")
			}
			backend := newHeaderBackend(t, hdrLen)
			cfg := Config{Upstreams: [][]string{{backend.Addr()}}, ProxyProtocol: tc.version}
			if tc.raw {
				cfg.Raw = &Raw{}
			}
			r := startRelay(t, cfg)
			var c *net.TCPConn
			for c == nil || localPort(c) < 10000 {
				c = dialFrom(t, "127.0.0.2", r.addr(0))
			}
			if relayPort(r) < 10000 {
				t.Skip("the relay got a port below 10000; the v1 length would differ")
			}
			if got := roundTrip(t, c, "payload after the header"); got != "payload after the header" {
				t.Fatalf("echo %q", got)
			}
			src := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), localPort(c))
			dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), relayPort(r))
			want := v2Header(src, dst)
			if tc.version == 1 {
				want = fmt.Appendf(nil, "PROXY TCP4 127.0.0.2 127.0.0.1 %d %d\r\n", src.Port(), dst.Port())
			}
			got := backend.headers()
			if len(got) != 1 || !bytes.Equal(got[0], want) {
				t.Fatalf("upstream read header\n %q\nwant\n %q", got, want)
			}
		})
	}
}

// TestAcceptProxyFromTrustedFront: 127.0.0.1 is the trusted front. The
// client its v1 header names (203.0.113.9) is what the ACL is asked about
// and what the relay's own v2 header to the upstream says; the payload
// that came in the same segment as the header arrives whole.
func TestAcceptProxyFromTrustedFront(t *testing.T) {
	checkLeaks(t)
	backend := newHeaderBackend(t, 28)
	var acl askedACL
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}, ProxyProtocol: 2,
		AcceptProxy: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Admit: acl.admit})
	c := dialFrom(t, "127.0.0.1", r.addr(0))
	hdr := fmt.Sprintf("PROXY TCP4 203.0.113.9 192.0.2.80 5555 80\r\n")
	if _, err := io.WriteString(c, hdr+"hello"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo %q, %v", buf, err)
	}
	want := v2Header(netip.MustParseAddrPort("203.0.113.9:5555"), netip.MustParseAddrPort("192.0.2.80:80"))
	if got := backend.headers(); len(got) != 1 || !bytes.Equal(got[0], want) {
		t.Fatalf("upstream header %q, want %q", got, want)
	}
	if asked := acl.get(); len(asked) != 1 || asked[0] != netip.MustParseAddrPort("203.0.113.9:5555") {
		t.Fatalf("ACL asked about %v, want [203.0.113.9:5555]", asked)
	}
	if n := r.Stats().Accepted.Load(); n != 1 {
		t.Errorf("Accepted = %d, want 1", n)
	}
}

// TestAcceptProxyCarriedAddressLimits: per-source limits count the clients
// the front's headers name, not the front.
func TestAcceptProxyCarriedAddressLimits(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	var refused refusals
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}},
		AcceptProxy: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		PerSource:   limit.Config{MaxConns: 1}, Refused: refused.record})
	open := func(client string) net.Conn {
		c := dialFrom(t, "127.0.0.1", r.addr(0))
		fmt.Fprintf(c, "PROXY TCP4 %s 127.0.0.1 4000 80\r\n", client)
		return c
	}
	for _, client := range []string{"198.51.100.1", "198.51.100.2"} {
		if got := roundTrip(t, open(client), "x"); got != "x" {
			t.Fatalf("%s: echo %q", client, got)
		}
	}
	expectClosed(t, open("198.51.100.1"), 5*time.Second)
	world.Eventually(t, "refusal", func() bool { return len(refused.get()) == 1 })
	if got := refused.get()[0]; got != "198.51.100.1 per_source: too many connections from this source" {
		t.Errorf("refusal %q", got)
	}
	if n := backend.Accepted(); n != 2 {
		t.Errorf("backend accepted %d, want 2", n)
	}
}

// TestProxyHeaderBadInput: from a trusted front, a header that is
// malformed, truncated, missing, late, or not believed (an untrusted
// source opening with one) ends the connection with one log line and
// nothing reaches the upstream.
func TestProxyHeaderBadInput(t *testing.T) {
	tests := []struct {
		name   string
		from   string
		send   string
		close  bool   // close the write side after sending
		reason string // in the log line
	}{
		{"malformed", "127.0.0.1", "PROXY TCP4 1.2.3.400 127.0.0.1 1 2\r\nGET / HTTP/1.0\r\n", false, "proxy_header: proxyhdr:"},
		{"truncated", "127.0.0.1", "PROXY TCP4 192.0.2.1 127.0", true, "proxy_header: connection closed after 26 bytes of a PROXY header"},
		{"v2 truncated", "127.0.0.1", "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x01\x02", true, "proxy_header: connection closed after 18 bytes"},
		{"slow", "127.0.0.1", "PROXY TCP4 192.0.2.1 ", false, "proxy_header: no complete PROXY header within the header timeout"},
		{"missing", "127.0.0.1", "GET / HTTP/1.0\r\n\r\n", false, "proxy_header: proxyhdr: not a PROXY protocol header"},
		{"too long", "127.0.0.1", "PROXY TCP4 " + string(bytes.Repeat([]byte("9"), 120)), false, "proxy_header: proxyhdr: PROXY header too long"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			backend := world.NewBackend(t, world.Echo)
			r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}},
				AcceptProxy:        []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
				ProxyHeaderTimeout: 300 * time.Millisecond})
			c := dialFrom(t, tc.from, r.addr(0))
			if _, err := io.WriteString(c, tc.send); err != nil {
				t.Fatal(err)
			}
			if tc.close {
				c.CloseWrite()
			}
			expectClosed(t, c, 5*time.Second)
			line := r.logs.Wait(t, `"message":"client refused"`)
			if !bytes.Contains([]byte(line), []byte(strconv.Quote(tc.reason)[:len(tc.reason)])) {
				t.Errorf("log line %s\nlacks reason %q", line, tc.reason)
			}
			world.Eventually(t, "counted", func() bool { return r.Stats().RejectedProxyHeader.Load() == 1 })
			if n := r.logs.Count(`"message":"client refused"`); n != 1 {
				t.Errorf("%d log lines, want 1:\n%s", n, r.logs.String())
			}
			if n := backend.Accepted(); n != 0 {
				t.Errorf("upstream dialled %d times, want 0", n)
			}
			if n := r.Stats().Accepted.Load(); n != 0 {
				t.Errorf("Accepted = %d, want 0", n)
			}
		})
	}
}

// TestProxyHeaderFromUntrustedSource: 127.0.0.2 is not a trusted front;
// its connection opening with a header is closed, while its plain
// connection is served with its own address. The header is written before
// the relay accepts (Serve starts after), so the check sees it.
func TestProxyHeaderFromUntrustedSource(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := listenRelay(t, Config{Upstreams: [][]string{{backend.Addr()}},
		AcceptProxy: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	expectClosed(t, serveAfterHeader(t, r, "127.0.0.2"), 5*time.Second)
	r.logs.Wait(t, `"reason":"proxy_header: sent by a source not in accept_proxy_protocol"`, `"client":"127.0.0.2:`)
	if got := roundTrip(t, dialFrom(t, "127.0.0.2", r.addr(0)), "plain"); got != "plain" {
		t.Fatalf("plain client: echo %q", got)
	}
	if n := backend.Accepted(); n != 1 {
		t.Errorf("backend accepted %d, want 1 (the plain client)", n)
	}
	if n := r.Stats().RejectedProxyHeader.Load(); n != 1 {
		t.Errorf("RejectedProxyHeader = %d, want 1", n)
	}
}

// TestAcceptProxyV2LongAndLocal: a v2 header with 600 bytes of TLVs (more
// than the first read buffer) is taken off whole; a LOCAL header (the
// front's own health check) keeps the front's address.
func TestAcceptProxyV2LongAndLocal(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	var acl askedACL
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}},
		AcceptProxy: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Admit: acl.admit})
	h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("2001:db8::9"), Port: 7},
		&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443})
	if err := h.SetTLVs([]proxyproto.TLV{{Type: proxyproto.PP2_TYPE_NOOP, Value: make([]byte, 600)}}); err != nil {
		t.Fatal(err)
	}
	long, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	local := []byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")
	for _, hdr := range [][]byte{long, local} {
		c := dialFrom(t, "127.0.0.1", r.addr(0))
		if _, err := c.Write(hdr); err != nil {
			t.Fatal(err)
		}
		if got := roundTrip(t, c, "after"); got != "after" {
			t.Fatalf("echo %q", got)
		}
	}
	want := []netip.Addr{netip.MustParseAddr("2001:db8::9"), netip.MustParseAddr("127.0.0.1")}
	if asked := acl.get(); len(asked) != 2 || asked[0].Addr() != want[0] || asked[1].Addr() != want[1] {
		t.Fatalf("ACL asked about %v, want %v", asked, want)
	}
}

// TestSendProxyHeaderWithoutClientBytes: the header travels with the
// client's first bytes when they are there (direction.holdHeader), so it
// must still go out alone when they are not: to an upstream that speaks
// first and waits for the header to do so, and to one whose client closes
// without a byte. The header's bytes are not counted as the client's.
func TestSendProxyHeaderWithoutClientBytes(t *testing.T) {
	checkLeaks(t)
	type seen struct {
		header []byte
		rest   string
	}
	got := make(chan seen, 2)
	backend := world.NewBackend(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		var s seen
		s.header = make([]byte, 28) // v2, TCP over IPv4
		if _, err := io.ReadFull(c, s.header); err != nil {
			got <- s
			return
		}
		io.WriteString(c, "220 printer ready\r\n")
		rest, _ := io.ReadAll(c)
		s.rest = string(rest)
		got <- s
	})
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}, ProxyProtocol: 2})
	wantHeader := func(s seen, c net.Conn) {
		t.Helper()
		src := c.LocalAddr().(*net.TCPAddr).AddrPort()
		if want := v2Header(src, netip.AddrPortFrom(src.Addr(), relayPort(r))); !bytes.Equal(s.header, want) {
			t.Fatalf("upstream header %q, want %q", s.header, want)
		}
	}

	// The upstream speaks first: its greeting arrives though the client
	// sends nothing until it has read it.
	c := r.dial(t, 0)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	greeting, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || greeting != "220 printer ready\r\n" {
		t.Fatalf("greeting %q, %v", greeting, err)
	}
	io.WriteString(c, "QUIT")
	c.CloseWrite()
	s := <-got
	wantHeader(s, c)
	if s.rest != "QUIT" {
		t.Fatalf("upstream read %q after the header, want QUIT", s.rest)
	}
	c.Close()
	r.logs.Wait(t, `"bytes_in":4`)

	// The client closes without a byte: the header still reaches the
	// upstream, then the FIN.
	c = r.dial(t, 0)
	c.Close()
	s = <-got
	wantHeader(s, c)
	if s.rest != "" {
		t.Fatalf("upstream read %q after the header, want nothing", s.rest)
	}
	r.logs.WaitCount(t, 2, `"bytes_in":`)
	if n := r.Stats().BytesIn.Load(); n != 4 {
		t.Errorf("BytesIn = %d, want 4 (the header is not the client's)", n)
	}
}
