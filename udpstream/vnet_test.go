package udpstream

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/transport/v3"
	"github.com/pion/transport/v3/vnet"
	"github.com/rs/zerolog"

	testworld "github.com/edgerelay/relay/internal/world"
)

// Any pion transport.Net (vnet, stdnet) can carry the relay's sessions.
var _ packetNet = transport.Net(nil)

// natWorld is a simulated network: a client behind a NAT on 192.168.0.0/24,
// the relay (1.2.3.10) and its backend (1.2.3.20) on the "WAN" 1.2.3.0/24.
type natWorld struct {
	relay   *Relay
	client  net.PacketConn
	logs    *testworld.LogBuffer
	netLogs *testworld.LogBuffer // the simulated routers' warnings: a NAT's drops
	served  chan error
	backend chan struct{} // closed when the backend goroutine exits
}

const (
	vnetRelayAddr   = "1.2.3.10:8100"
	vnetBackendAddr = "1.2.3.20:8100"
	vnetNATAddr     = "1.2.3.100"
)

// newNATWorld builds the network. The NAT forgets a mapping after
// mappingLife without outbound traffic, so a pause longer than that makes
// the client appear from a new port: a NAT rebinding. A reply that comes
// back later than mappingLife after the datagram it answers is dropped
// too, as by a real NAT, so mappingLife must be well above the longest
// round trip the test can meet (the first one opens the session).
func newNATWorld(t *testing.T, mappingLife time.Duration) *natWorld {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	w := &natWorld{logs: &testworld.LogBuffer{}, netLogs: &testworld.LogBuffer{},
		served: make(chan error, 1), backend: make(chan struct{})}
	lf := &logging.DefaultLoggerFactory{Writer: w.netLogs, DefaultLogLevel: logging.LogLevelWarn}
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "1.2.3.0/24", LoggerFactory: lf})
	must(err)
	relayNet, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"1.2.3.10"}})
	must(err)
	backendNet, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"1.2.3.20"}})
	must(err)
	must(wan.AddNet(relayNet))
	must(wan.AddNet(backendNet))
	lan, err := vnet.NewRouter(&vnet.RouterConfig{
		CIDR:      "192.168.0.0/24",
		StaticIPs: []string{vnetNATAddr},
		NATType: &vnet.NATType{
			Mode:              vnet.NATModeNormal,
			MappingBehavior:   vnet.EndpointIndependent,
			FilteringBehavior: vnet.EndpointAddrPortDependent,
			MappingLifeTime:   mappingLife,
		},
		LoggerFactory: lf,
	})
	must(err)
	must(wan.AddRouter(lan))
	clientNet, err := vnet.NewNet(&vnet.NetConfig{})
	must(err)
	must(lan.AddNet(clientNet))
	must(wan.Start())
	t.Cleanup(func() { _ = wan.Stop() })

	bconn, err := backendNet.ListenPacket("udp4", vnetBackendAddr)
	must(err)
	go serveVNetBackend(bconn, w.backend)
	t.Cleanup(func() { _ = bconn.Close(); <-w.backend })

	w.relay, err = listen(Config{
		Name:      "rtb",
		Listen:    []string{vnetRelayAddr},
		Upstreams: [][]string{{vnetBackendAddr}},
		Log:       zerolog.New(w.logs),
	}, newSingleNet(relayNet))
	must(err)
	go func() { w.served <- w.relay.Serve() }()
	t.Cleanup(func() { _ = w.relay.Close(); <-w.served })

	w.client, err = clientNet.ListenPacket("udp4", "0.0.0.0:0")
	must(err)
	t.Cleanup(func() { _ = w.client.Close() })
	return w
}

// serveVNetBackend is the loopback backend's protocol over a vnet socket.
func serveVNetBackend(c net.PacketConn, done chan struct{}) {
	defer close(done)
	buf := make([]byte, msgBufSize)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		ua, _ := from.(*net.UDPAddr)
		_, _ = c.WriteTo(backendReply("vb", ua.AddrPort(), buf[:n]), from)
	}
}

// exchange sends one datagram through the relay and returns the backend's
// parsed answer.
func (w *natWorld) exchange(t *testing.T, msg string) echoInfo {
	t.Helper()
	to := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(vnetRelayAddr))
	if _, err := w.client.WriteTo([]byte(msg), to); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	_ = w.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := w.client.ReadFrom(buf)
	if err != nil {
		t.Fatalf("%q: no reply: %v\nrelay log:\n%s\nsimulated network:\n%s", msg, err, w.logs, w.netLogs)
	}
	if from.String() != vnetRelayAddr {
		t.Fatalf("%q: reply from %s, want %s", msg, from, vnetRelayAddr)
	}
	info, err := parseEcho(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if info.sum != sha([]byte(msg)) {
		t.Fatalf("%q arrived altered", msg)
	}
	return info
}

// The client's NAT mapping changes mid-stream: the relay sees a new source,
// opens a new session for it and keeps forwarding; the old session lives on
// until it expires.
func TestNATRebinding(t *testing.T) {
	checkLeaks(t)
	// 1 s: with 150 ms the first exchange, which opens the session, took
	// longer than the mapping's life on a busy machine under -race (2 of
	// 120 runs, 'before 0: no reply'), the NAT dropped the reply, and the
	// test failed with the relay's log empty; a 40 ms delay on the
	// simulated WAN (a 160 ms round trip) made it fail every time.
	const mappingLife = time.Second
	w := newNATWorld(t, mappingLife)

	var before, after uint16 // the relay's upstream port, as the backend saw it
	for i := range 5 {
		info := w.exchange(t, fmt.Sprintf("before %d", i))
		if i > 0 && info.srcPort != before {
			t.Fatalf("datagram %d left the relay from upstream port %d, earlier ones from %d", i, info.srcPort, before)
		}
		before = info.srcPort
	}
	sources := w.sessionSources()

	// Idle past the NAT's mapping lifetime: the scenario, not a wait for
	// the relay. The next datagram leaves the NAT from a new port.
	time.Sleep(mappingLife + mappingLife/4)

	for i := range 5 {
		info := w.exchange(t, fmt.Sprintf("after %d", i))
		if i > 0 && info.srcPort != after {
			t.Fatalf("after rebinding, upstream port changed again (%d, then %d)", after, info.srcPort)
		}
		after = info.srcPort
	}
	if after == before {
		t.Fatalf("new NAT mapping reused the old session (upstream port %d)", before)
	}
	now := w.sessionSources()
	if len(sources) != 1 || len(now) != 2 {
		t.Fatalf("relay sessions before %v, after %v: want 1 then 2", sources, now)
	}
	for _, src := range now {
		if src.Addr() != netip.MustParseAddr(vnetNATAddr) {
			t.Errorf("session source %s is not the NAT's public address", src)
		}
	}
	st := w.relay.Stats()
	// Each counter is bumped right after its send, so the client can hold
	// the echo before the relay counted the datagram it came from: wait for
	// both.
	waitStat(t, "DatagramsIn", st.DatagramsIn.Load, 10)
	waitStat(t, "DatagramsOut", st.DatagramsOut.Load, 10)
	if st.SessionsCreated.Load() != 2 || st.DatagramsIn.Load() != 10 || st.DatagramsOut.Load() != 10 {
		t.Errorf("created %d, in %d, out %d; want 2, 10, 10",
			st.SessionsCreated.Load(), st.DatagramsIn.Load(), st.DatagramsOut.Load())
	}
}

// sessionSources lists the client addresses the relay has sessions for.
func (w *natWorld) sessionSources() []netip.AddrPort {
	p := w.relay.ports[0]
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []netip.AddrPort
	for src := range p.sessions {
		out = append(out, src)
	}
	return out
}
