//go:build linux

package udpstream

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	testworld "github.com/edgerelay/relay/internal/world"
)

// gatedNet holds every upstream dial, once gated, until the test hands out
// a permit: session setup as slow as the test wants.
type gatedNet struct {
	network
	gated   atomic.Bool
	waiting atomic.Int32
	permits chan struct{}
	done    chan struct{} // closed at cleanup: every held dial goes on
}

func (g *gatedNet) dial(up netip.AddrPort) (packetConn, error) {
	if g.gated.Load() {
		g.waiting.Add(1)
		select {
		case <-g.permits:
		case <-g.done:
		}
		g.waiting.Add(-1)
	}
	return g.network.dial(up)
}

// permit lets one held dial go on, failing t if none is held within
// WaitLimit.
func (g *gatedNet) permit(t *testing.T) {
	t.Helper()
	select {
	case g.permits <- struct{}{}:
	case <-time.After(testworld.WaitLimit):
		t.Fatalf("no dial waited for a permit in %v (%d waiting)", testworld.WaitLimit, g.waiting.Load())
	}
}

// TestSetupBacklog: while sessions are slow to open, the newcomers queue up
// to setupQueueLen and the rest are dropped as setup_backlog; an
// established session's datagrams keep flowing all the while, and a source
// that sends again after a drop is opened before the queue.
func TestSetupBacklog(t *testing.T) {
	checkLeaks(t)
	up := startSelective(t)
	cfg := Config{Name: "rtb", Listen: []string{"127.0.0.1:0"}, Upstreams: [][]string{{up.addr()}}, Log: zerolog.Nop()}
	g := &gatedNet{network: defaultNetwork(&cfg), permits: make(chan struct{}), done: make(chan struct{})}
	r := serveOn(t, cfg, g)
	t.Cleanup(func() { close(g.done) }) // runs first
	addr := r.Addrs()[0]
	to := addr.(*net.UDPAddr)
	st := r.Stats()

	established := newClient(t, "127.0.0.2")
	if !echoFrom(established, addr, "before", 5*time.Second) {
		t.Fatal("established client not served")
	}
	g.gated.Store(true)
	spoof := newSpoofer(t, 10)
	workers := r.setupWorkers
	spoof.flood(to, 0, workers, 0)
	testworld.Eventually(t, "every setupLoop to hold a dial", func() bool { return int(g.waiting.Load()) == workers })
	const more = setupQueueLen + 88
	spoof.flood(to, workers, more, 0)
	waitStat(t, "setup_backlog drops", st.Drops.SetupBacklog.Load, more-setupQueueLen)
	for i := range 20 {
		if !echoFrom(established, addr, fmt.Sprint(i), 5*time.Second) {
			t.Fatalf("established session's datagram %d not answered while setup was held", i)
		}
	}

	legit := newClient(t, "127.0.0.9")
	legit.send(addr, []byte("echo-first"))
	waitStat(t, "the newcomer's drop", st.Drops.SetupBacklog.Load, more-setupQueueLen+1)
	legit.send(addr, []byte("echo-again"))
	testworld.Eventually(t, "the retry to be queued", func() bool { return len(r.retries) == 1 })
	// The held dials end, then each loop takes one more: the retry lane's
	// first, before the queue's.
	for range 2 * workers {
		g.permit(t)
	}
	p, _, ok := legit.recv(5 * time.Second)
	if !ok || string(p) != "echo-again" {
		t.Fatalf("the retrying client got %q (%v), want its datagram echoed after %d dials", p, ok, 2*workers)
	}
	waitStat(t, "sessions opened", st.SessionsCreated.Load, uint64(1+2*workers))
	if n := st.SessionsCreated.Load(); n != uint64(1+2*workers) {
		t.Errorf("SessionsCreated = %d, want %d (established, the held ones, the retry and the queue's next)", n, 1+2*workers)
	}
	if n := st.Drops.SetupBacklog.Load(); n != more-setupQueueLen+1 {
		t.Errorf("setup_backlog = %d, want %d", n, more-setupQueueLen+1)
	}
}

// TestNewcomerBurstInOrder: the datagrams a new client sends while its
// session is being opened are kept and reach the upstream, in order.
func TestNewcomerBurstInOrder(t *testing.T) {
	checkLeaks(t)
	upc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer upc.Close()
	r := startRelayTo(t, upc.LocalAddr().(*net.UDPAddr).AddrPort(), true)
	to := r.Addrs()[0].(interface{ AddrPort() netip.AddrPort }).AddrPort()
	const n = batchSize
	snd := newSender(t, "127.0.0.2", to, 100)
	if sent, err := snd.send(n, 0); sent != n || err != nil {
		t.Fatalf("sent %d of %d: %v", sent, n, err)
	}
	buf := make([]byte, 200)
	for want := range uint64(n) {
		_ = upc.SetReadDeadline(time.Now().Add(2 * time.Second))
		k, err := upc.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", want, n, err)
		}
		if got := binary.BigEndian.Uint64(buf[:k]); got != want {
			t.Fatalf("datagram %d arrived as number %d", got, want)
		}
	}
}

// TestNewcomerBacklogKept: after a binary upgrade every open stream is a
// newcomer to the new process, and what it sent while that process was not
// reading yet (the old one had stopped) waits in the listen socket and is
// read in one go while its session is being opened. All of it is kept and
// reaches the upstream in order. Fails with a cap of two batches: 64 of 256
// arrived, 192 dropped as setup_backlog (TestZeroLossOperations lost 3 to 60
// datagrams so, after an upgrade on a loaded machine).
func TestNewcomerBacklogKept(t *testing.T) {
	checkLeaks(t)
	upc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer upc.Close()
	_ = upc.SetReadBuffer(4 << 20)
	cfg := Config{Name: "rtb", Listen: []string{"127.0.0.1:0"}, Upstreams: [][]string{{upc.LocalAddr().String()}},
		Log: zerolog.Nop()}
	g := &gatedNet{network: defaultNetwork(&cfg), permits: make(chan struct{}), done: make(chan struct{})}
	g.gated.Store(true)
	r, err := listen(cfg, g)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(g.done) })
	st := r.Stats()

	// The backlog: a quarter second of a stream at 1 000 datagrams a
	// second, sent before anyone reads the listen socket.
	const n = 8 * batchSize
	snd := newSender(t, "127.0.0.2", r.Addrs()[0].(*net.UDPAddr).AddrPort(), 8)
	for seq := 0; seq < n; seq += batchSize {
		if sent, err := snd.send(batchSize, uint64(seq)); sent != batchSize || err != nil {
			t.Fatalf("sent %d of %d: %v", sent, batchSize, err)
		}
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve() }()
	t.Cleanup(func() { _ = r.Close(); <-served })
	// The reader takes the whole backlog while the session's dial is held.
	read := func() uint64 {
		p := r.ports[0]
		p.mu.Lock()
		defer p.mu.Unlock()
		kept := 0
		for _, q := range p.pending {
			kept += len(q.data)
		}
		return uint64(kept) + st.Drops.SetupBacklog.Load()
	}
	waitStat(t, "datagrams read while the dial is held", read, n)
	g.permit(t)

	buf := make([]byte, 64)
	for want := range uint64(n) {
		_ = upc.SetReadDeadline(time.Now().Add(2 * time.Second))
		k, err := upc.Read(buf)
		if err != nil {
			t.Fatalf("upstream got %d of %d datagrams (%v); setup_backlog %d", want, n, err, st.Drops.SetupBacklog.Load())
		}
		if got := binary.BigEndian.Uint64(buf[:k]); got != want {
			t.Fatalf("datagram %d arrived as number %d; setup_backlog %d", want, got, st.Drops.SetupBacklog.Load())
		}
	}
	if d := st.Drops.SetupBacklog.Load(); d != 0 {
		t.Errorf("setup_backlog = %d, want 0", d)
	}
}
