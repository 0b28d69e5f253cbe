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
	if !echoFrom(established, addr, "before", 2*time.Second) {
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
		if !echoFrom(established, addr, fmt.Sprint(i), 2*time.Second) {
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
		g.permits <- struct{}{}
	}
	p, _, ok := legit.recv(2 * time.Second)
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
