package udpstream

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"
	"github.com/rs/zerolog"

	// Named apart from this package's own world type, the relay under test.
	testworld "github.com/edgerelay/relay/internal/world"
)

// The loopback world: clients on 127.0.0.2, .3 … → relay on 127.0.0.1, one
// listen port per backend → echo backends on 127.0.0.1.

// backend answers every datagram on its socket:
//
//	"zero"        → an empty datagram
//	"big:N"       → N bytes of pattern(N)
//	anything else → "tag|source-port|sha256-hex|length" of what it got,
//	                 so the client can check content, path and session.
type backend struct {
	conn *net.UDPConn
	tag  string
	done chan struct{}
}

func startBackend(t *testing.T, tag string) *backend {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{conn: c, tag: tag, done: make(chan struct{})}
	go b.serve()
	t.Cleanup(b.close)
	return b
}

func (b *backend) addr() netip.AddrPort { return b.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (b *backend) close() {
	_ = b.conn.Close()
	<-b.done
}

func (b *backend) serve() {
	defer close(b.done)
	buf := make([]byte, msgBufSize)
	for {
		n, from, err := b.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		_, _ = b.conn.WriteToUDPAddrPort(backendReply(b.tag, from, buf[:n]), from)
	}
}

func backendReply(tag string, from netip.AddrPort, p []byte) []byte {
	switch s := string(p); {
	case s == "zero":
		return nil
	case strings.HasPrefix(s, "big:"):
		n, _ := strconv.Atoi(s[4:])
		return pattern(n)
	default:
		sum := sha256.Sum256(p)
		return fmt.Appendf(nil, "%s|%d|%s|%d", tag, from.Port(), hex.EncodeToString(sum[:]), len(p))
	}
}

// pattern is n deterministic bytes that are not all alike.
func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + n)
	}
	return p
}

// echoInfo is a parsed default backend reply.
type echoInfo struct {
	tag     string
	srcPort uint16 // the relay's upstream socket as the backend saw it
	sum     string
	length  int
}

func parseEcho(p []byte) (echoInfo, error) {
	f := strings.Split(string(p), "|")
	if len(f) != 4 {
		return echoInfo{}, fmt.Errorf("not an echo reply: %q", p)
	}
	port, err1 := strconv.ParseUint(f[1], 10, 16)
	n, err2 := strconv.Atoi(f[3])
	if err := errors.Join(err1, err2); err != nil {
		return echoInfo{}, err
	}
	return echoInfo{tag: f[0], srcPort: uint16(port), sum: f[2], length: n}, nil
}

func sha(p []byte) string {
	s := sha256.Sum256(p)
	return hex.EncodeToString(s[:])
}

// client is a UDP socket bound to one loopback address.
type client struct {
	t    *testing.T
	conn *net.UDPConn
}

func newClient(t *testing.T, ip string) *client {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &client{t: t, conn: c}
}

func (c *client) addr() netip.AddrPort { return c.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (c *client) send(to net.Addr, p []byte) {
	c.t.Helper()
	if _, err := c.conn.WriteTo(p, to); err != nil {
		c.t.Fatal(err)
	}
}

// recv waits up to d for a datagram; ok is false on timeout.
func (c *client) recv(d time.Duration) (p []byte, from netip.AddrPort, ok bool) {
	c.t.Helper()
	buf := make([]byte, msgBufSize)
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, from, false
		}
		c.t.Fatal(err)
	}
	return buf[:n], from, true
}

// exchange sends p to the relay port and returns the reply, failing the test
// if none comes or it does not come from that port.
func (c *client) exchange(to net.Addr, p []byte) []byte {
	c.t.Helper()
	c.send(to, p)
	reply, from, ok := c.recv(5 * time.Second)
	if !ok {
		c.t.Fatalf("%s: no reply from %s", c.addr(), to)
	}
	want := to.(*net.UDPAddr).AddrPort()
	want = netip.AddrPortFrom(want.Addr().Unmap(), want.Port())
	if from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port()); from != want {
		c.t.Fatalf("%s: reply came from %s, want %s (the port the client sent to)", c.addr(), from, want)
	}
	return reply
}

// world is a running relay between backends and the test's clients.
type world struct {
	t        *testing.T
	relay    *Relay
	backends []*backend
	logs     *testworld.LogBuffer
	served   chan error
}

// newWorld starts one backend per port and a relay over them on 127.0.0.1.
// edit may change the config before Listen.
func newWorld(t *testing.T, ports int, edit func(*Config)) *world {
	t.Helper()
	w := &world{t: t, logs: &testworld.LogBuffer{}, served: make(chan error, 1)}
	cfg := Config{Name: "rtb", Log: zerolog.New(w.logs)}
	for i := range ports {
		b := startBackend(t, fmt.Sprintf("b%d", i))
		w.backends = append(w.backends, b)
		cfg.Upstreams = append(cfg.Upstreams, []string{b.addr().String()})
	}
	if edit != nil {
		edit(&cfg)
	}
	w.relay = listenRange(t, cfg, ports)
	go func() { w.served <- w.relay.Serve() }()
	t.Cleanup(w.close)
	return w
}

// listenRange binds the relay on a contiguous range of ports, like an RTB
// listener: it probes for a free range with plain sockets, then binds it.
func listenRange(t *testing.T, cfg Config, n int) *Relay {
	t.Helper()
	for try := 0; try < 20; try++ {
		base := 20000 + int(time.Now().UnixNano()/7%30000)
		cfg.Listen = nil
		for i := range n {
			cfg.Listen = append(cfg.Listen, fmt.Sprintf("127.0.0.1:%d", base+i))
		}
		if !rangeFree(cfg.Listen) {
			continue
		}
		r, err := Listen(cfg)
		if err == nil {
			return r
		}
	}
	t.Fatal("no free port range found")
	return nil
}

func rangeFree(addrs []string) bool {
	var held []net.PacketConn
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	for _, a := range addrs {
		c, err := net.ListenPacket("udp4", a)
		if err != nil {
			return false
		}
		held = append(held, c)
	}
	return true
}

// serveOn listens with cfg on nw and serves until the test ends.
func serveOn(t *testing.T, cfg Config, nw network) *Relay {
	t.Helper()
	r, err := listen(cfg, nw)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve() }()
	t.Cleanup(func() { _ = r.Close(); <-served })
	return r
}

func (w *world) port(i int) net.Addr { return w.relay.Addrs()[i] }

func (w *world) close() {
	_ = w.relay.Close()
	if err := <-w.served; !errors.Is(err, ErrClosed) {
		w.t.Errorf("Serve returned %v, want ErrClosed", err)
	}
}

// waitStat waits until f reaches want; the relay's counters are the signal.
func waitStat(t *testing.T, what string, f func() uint64, want uint64) {
	t.Helper()
	testworld.Eventually(t, fmt.Sprintf("%s to reach %d", what, want), func() bool { return f() >= want })
}

// checkLeaks fails the test if goroutines outlive it. Called first, its
// cleanup runs last, after the world's own cleanups have closed everything.
func checkLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(test.CheckRoutines(t))
}
