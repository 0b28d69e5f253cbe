//go:build linux

package udpstream

import (
	"bytes"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/ipv4"

	testworld "github.com/edgerelay/relay/internal/world"
)

// selective is an upstream that answers only datagrams that start with
// "echo" (a legitimate client) and ignores the rest (a spoofed flood, whose
// sources would never answer anyway): the flood's sessions stay
// unconfirmed.
type selective struct {
	conn    *net.UDPConn
	ignored atomic.Uint64
	done    chan struct{}
}

func startSelective(t *testing.T) *selective {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(8 << 20)
	s := &selective{conn: c, done: make(chan struct{})}
	go s.serve()
	t.Cleanup(func() { _ = c.Close(); <-s.done })
	return s
}

func (s *selective) serve() {
	defer close(s.done)
	buf := make([]byte, 2048)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if !bytes.HasPrefix(buf[:n], []byte("echo")) {
			s.ignored.Add(1)
			continue
		}
		_, _ = s.conn.WriteToUDPAddrPort(buf[:n], from)
	}
}

func (s *selective) addr() string { return s.conn.LocalAddr().String() }

// startConntrackRelay runs a one-port relay on 127.0.0.1 to up with edit
// applied to its config.
func startConntrackRelay(t *testing.T, up string, edit func(*Config)) (*Relay, net.Addr, *testworld.LogBuffer) {
	t.Helper()
	logs := &testworld.LogBuffer{}
	cfg := Config{Name: "rtb", Listen: []string{"127.0.0.1:0"}, Upstreams: [][]string{{up}},
		Log: zerolog.New(logs).Level(zerolog.InfoLevel)}
	if edit != nil {
		edit(&cfg)
	}
	r, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve() }()
	t.Cleanup(func() { _ = r.Close(); <-served })
	return r, r.Addrs()[0], logs
}

// echoFrom sends "echo<msg>" from c and reports whether it came back within d.
func echoFrom(c *client, to net.Addr, msg string, d time.Duration) bool {
	want := "echo" + msg
	c.send(to, []byte(want))
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		p, _, ok := c.recv(time.Until(deadline))
		if ok && string(p) == want {
			return true
		}
		if !ok {
			return false
		}
	}
	return false
}

// TestEvictOldestUnconfirmed: with the table full, a newcomer takes the
// place of the oldest session the upstream never answered; a confirmed
// session is never evicted, so a table full of them refuses newcomers.
func TestEvictOldestUnconfirmed(t *testing.T) {
	checkLeaks(t)
	up := startSelective(t)
	r, addr, _ := startConntrackRelay(t, up.addr(), func(c *Config) { c.MaxSessions = 3; c.MaxSessionsPerSource = 10 })
	st := r.Stats()

	confirmed := newClient(t, "127.0.0.2")
	if !echoFrom(confirmed, addr, "a", 2*time.Second) {
		t.Fatal("first client not served")
	}
	silent1, silent2 := newClient(t, "127.0.0.3"), newClient(t, "127.0.0.4")
	silent1.send(addr, []byte("flood"))
	waitStat(t, "second session", st.SessionsCreated.Load, 2)
	silent2.send(addr, []byte("flood"))
	waitStat(t, "third session", st.SessionsCreated.Load, 3)
	testworld.Eventually(t, "upstream saw the flood", func() bool { return up.ignored.Load() == 2 })

	newcomer := newClient(t, "127.0.0.5")
	if !echoFrom(newcomer, addr, "b", 2*time.Second) {
		t.Fatal("newcomer not served in a table full of unconfirmed sessions")
	}
	if n := st.SessionsEvicted.Load(); n != 1 {
		t.Fatalf("SessionsEvicted = %d, want 1", n)
	}
	// silent1 was the oldest unconfirmed: its next datagram needs a new
	// session, which evicts silent2; the confirmed ones stay.
	if !echoFrom(confirmed, addr, "c", 2*time.Second) || !echoFrom(newcomer, addr, "d", 2*time.Second) {
		t.Fatal("a confirmed session lost its place")
	}
	silent1.send(addr, []byte("echo-again"))
	waitStat(t, "second eviction", st.SessionsEvicted.Load, 2)
	// Now three confirmed sessions fill the table: a newcomer is refused.
	if !echoFrom(silent1, addr, "e", 2*time.Second) {
		t.Fatal("silent1's new session not served")
	}
	late := newClient(t, "127.0.0.6")
	late.send(addr, []byte("echo"))
	waitStat(t, "session_limit drop", st.Drops.SessionLimit.Load, 1)
	if n := st.SessionsActive.Load(); n != 3 {
		t.Fatalf("SessionsActive = %d, want 3", n)
	}
	if n := st.SessionsEvicted.Load(); n != 2 {
		t.Fatalf("SessionsEvicted = %d, want 2 (a confirmed session was evicted)", n)
	}
}

// TestUnconfirmedExpiresFast: a session the upstream never answered ends
// after UnconfirmedTimeout, an answered one only after SessionTimeout.
func TestUnconfirmedExpiresFast(t *testing.T) {
	checkLeaks(t)
	up := startSelective(t)
	r, addr, logs := startConntrackRelay(t, up.addr(), func(c *Config) {
		c.SessionTimeout = time.Minute
		c.UnconfirmedTimeout = 200 * time.Millisecond
	})
	answered, silent := newClient(t, "127.0.0.2"), newClient(t, "127.0.0.3")
	if !echoFrom(answered, addr, "x", 2*time.Second) {
		t.Fatal("not served")
	}
	start := time.Now()
	silent.send(addr, []byte("nobody answers"))
	waitStat(t, "expiry", r.Stats().SessionsExpired.Load, 1)
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("unconfirmed session ended after %v, want 200ms (plus up to three sweeps)", d)
	}
	if n := r.Stats().SessionsActive.Load(); n != 1 {
		t.Errorf("SessionsActive = %d, want 1 (the answered session)", n)
	}
	if n := logs.Count(`"end":"idle"`); n != 0 {
		t.Errorf("an unconfirmed session's end was logged at info:\n%s", logs.String())
	}
}

// TestSessionsPerSource: one address varying its port gets at most
// MaxSessionsPerSource sessions; another address is not affected.
func TestSessionsPerSource(t *testing.T) {
	checkLeaks(t)
	up := startSelective(t)
	r, addr, _ := startConntrackRelay(t, up.addr(), func(c *Config) { c.MaxSessionsPerSource = 2 })
	for i := range 2 {
		if !echoFrom(newClient(t, "127.0.0.2"), addr, fmt.Sprint(i), 2*time.Second) {
			t.Fatalf("session %d of 127.0.0.2 not served", i+1)
		}
	}
	newClient(t, "127.0.0.2").send(addr, []byte("echo"))
	waitStat(t, "source_limit drop", r.Stats().Drops.SourceLimit.Load, 1)
	if !echoFrom(newClient(t, "127.0.0.3"), addr, "y", 2*time.Second) {
		t.Fatal("127.0.0.3 not served while 127.0.0.2 is at its limit")
	}
	if n := r.Stats().SessionsCreated.Load(); n != 3 {
		t.Fatalf("SessionsCreated = %d, want 3", n)
	}
}

// spoofer sends datagrams from many loopback source addresses and ports:
// ports sockets bound to 0.0.0.0, each datagram's source address set with
// IP_PKTINFO, so sources = addresses × ports without a socket per source.
type spoofer struct {
	conns []*ipv4.PacketConn
}

func newSpoofer(t *testing.T, ports int) *spoofer {
	t.Helper()
	s := &spoofer{}
	for range ports {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		s.conns = append(s.conns, ipv4.NewPacketConn(c))
	}
	return s
}

// flood sends one datagram from each of n sources numbered from first
// (127.1.x.y, every port of the spoofer), spread over d; it stops early if
// stop is closed.
func (s *spoofer) flood(to *net.UDPAddr, first, n int, d time.Duration, stop <-chan struct{}) (sent int) {
	start := time.Now()
	cm := &ipv4.ControlMessage{}
	payload := []byte("flood")
	step := max(n/200, 1)
	for k := range n {
		if k%step == 0 {
			select {
			case <-stop:
				return sent
			default:
			}
			if ahead := time.Duration(k)*d/time.Duration(n) - time.Since(start); ahead > 0 {
				time.Sleep(ahead) // pacing, not synchronisation
			}
		}
		i := first + k
		a := i / len(s.conns)
		cm.Src = net.IPv4(127, 1, byte(a>>8), byte(a)+1)
		if _, err := s.conns[i%len(s.conns)].WriteTo(payload, cm, to); err == nil {
			sent++
		}
	}
	return sent
}

// TestSpoofedFlood reproduces issue 13's flood with the default limits.
// Phase 1: 50 000 spoofed sources in about 1.2 s fill the table; the heap
// stays under 128 MiB (16 KiB a session at most). Phase 2: a trickle of
// 200 new spoofed sources a second keeps the table full (before
// conntrack-like eviction it stayed full for good and no new client got
// in); a new legitimate client is served within a second, and an
// established stream loses nothing. Phase 1's losses of the stream are
// logged, not asserted: on a loaded machine the listen socket's queue
// overflows while the relay opens sessions, whatever it does with them.
func TestSpoofedFlood(t *testing.T) {
	if raceEnabled {
		t.Skip("a flood of 50 000 sources takes minutes under the race detector; TestEvictOldestUnconfirmed covers the same code")
	}
	sources := 50_000
	if testing.Short() {
		sources = 10_000
	}
	checkLeaks(t)
	up := startSelective(t)
	r, addr, _ := startConntrackRelay(t, up.addr(), nil)
	st := r.Stats()
	to := addr.(*net.UDPAddr)

	stream := newClient(t, "127.0.0.2")
	if !echoFrom(stream, addr, "hello", 2*time.Second) {
		t.Fatal("stream client not served before the flood")
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	stop := make(chan struct{})
	var streamSent, streamBack atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		streamFlow(stream, addr, stop, &streamSent, &streamBack)
	}()
	defer func() { close(stop); wg.Wait() }()

	spoof := newSpoofer(t, 50)
	sent := spoof.flood(to, 0, sources, 1200*time.Millisecond, nil)
	waitStat(t, "the table to fill", func() uint64 { return uint64(st.SessionsActive.Load()) }, DefaultMaxSessions)
	settled(t, "the burst to be read", st.SessionsCreated.Load)
	var full runtime.MemStats
	runtime.ReadMemStats(&full)
	active := st.SessionsActive.Load()
	heapPer := float64(int64(full.HeapInuse)-int64(before.HeapInuse)) / float64(active)
	stackPer := float64(int64(full.StackInuse)-int64(before.StackInuse)) / float64(active)
	t.Logf("burst: %d spoofed sources sent, %d sessions opened, %d evicted, %d active; heap in use %.1f MiB (%.1f KiB a session, goroutine stacks %.1f KiB more); stream %d of %d answered",
		sent, st.SessionsCreated.Load(), st.SessionsEvicted.Load(), active,
		float64(full.HeapInuse)/(1<<20), heapPer/1024, stackPer/1024, streamBack.Load(), streamSent.Load())
	if full.HeapInuse > 128<<20 {
		t.Errorf("heap in use %d MiB during the flood, want under 128", full.HeapInuse>>20)
	}
	if heapPer > 16<<10 {
		t.Errorf("%.1f KiB of heap a session, want at most 16", heapPer/1024)
	}
	if active != DefaultMaxSessions {
		t.Errorf("%d sessions active after the burst, want the cap, %d", active, DefaultMaxSessions)
	}

	// Phase 2: the trickle keeps the table full of unconfirmed sessions.
	sent0, back0 := streamSent.Load(), streamBack.Load()
	trickleDone := make(chan int, 1)
	go func() { trickleDone <- spoof.flood(to, sources, 400, 2*time.Second, nil) }()
	legit := newClient(t, "127.0.0.9")
	start := time.Now()
	served := false
	for !served && time.Since(start) < time.Second {
		served = echoFrom(legit, addr, "legit", 200*time.Millisecond)
	}
	legitAfter := time.Since(start)
	trickled := <-trickleDone
	sent1 := streamSent.Load()
	testworld.Eventually(t, "the stream's replies", func() bool { return streamBack.Load()-back0 >= sent1-sent0 })
	t.Logf("trickle: %d more spoofed sources; legitimate client served after %v; stream %d of %d answered, %d sessions active",
		trickled, legitAfter.Round(time.Millisecond), streamBack.Load()-back0, sent1-sent0, st.SessionsActive.Load())
	if !served {
		t.Errorf("legitimate client not served within a second while the table was full of spoofed sessions")
	}
	if st.SessionsActive.Load() > DefaultMaxSessions {
		t.Errorf("%d sessions active, cap %d", st.SessionsActive.Load(), DefaultMaxSessions)
	}
}

// settled waits until counter has stopped moving for 300 ms: the relay has
// read what was queued for it.
func settled(t *testing.T, what string, counter func() uint64) {
	t.Helper()
	last, since := counter(), time.Now()
	testworld.Eventually(t, what, func() bool {
		if n := counter(); n != last {
			last, since = n, time.Now()
		}
		return time.Since(since) >= 300*time.Millisecond
	})
}

// streamFlow sends numbered "echo" datagrams from c every 2 ms until stop
// and counts the replies.
func streamFlow(c *client, to net.Addr, stop <-chan struct{}, sent, back *atomic.Int64) {
	go func() {
		buf := make([]byte, 64)
		for {
			_ = c.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, err := c.conn.Read(buf)
			if err != nil {
				return
			}
			if bytes.HasPrefix(buf[:n], []byte("echo-s")) {
				back.Add(1)
			}
		}
	}()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if _, err := c.conn.WriteTo(fmt.Appendf(nil, "echo-s%d", i), to); err == nil {
			sent.Add(1)
		}
	}
}

// TestPerSourceRate: an address sending 100 datagrams at once with a cap
// of 20 a second gets about 20 through (a burst of one second's worth) and
// the rest are dropped as source_rate; another address is not affected.
func TestPerSourceRate(t *testing.T) {
	checkLeaks(t)
	up := startSelective(t)
	r, addr, _ := startConntrackRelay(t, up.addr(), func(c *Config) { c.PerSourceRate = 20 })
	st := r.Stats()
	fast := newClient(t, "127.0.0.2")
	for i := range 100 {
		fast.send(addr, fmt.Appendf(nil, "flood%d", i))
	}
	waitStat(t, "all 100 counted", func() uint64 { return st.DatagramsIn.Load() + st.Drops.SourceRate.Load() }, 100)
	if in := st.DatagramsIn.Load(); in < 20 || in > 22 {
		t.Errorf("%d datagrams of a 20/s source forwarded from a burst of 100, want about 20", in)
	}
	if !echoFrom(newClient(t, "127.0.0.3"), addr, "other", 2*time.Second) {
		t.Fatal("another address refused")
	}
}
