package udpstream

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	testworld "github.com/edgerelay/relay/internal/world"
)

// streamer is an upstream that keeps what its clients send, by sequence
// number, and streams to every source it has heard from, a datagram every
// 2 ms until the test ends, whatever they do: a player streaming its
// status to a client that moved on, or is gone.
type streamer struct {
	conn *net.UDPConn
	stop chan struct{}
	wg   sync.WaitGroup

	mu    sync.Mutex // guards the following
	got   map[uint64][]byte
	dups  int
	peers map[netip.AddrPort]bool
}

func startStreamer(t *testing.T) *streamer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &streamer{conn: c, stop: make(chan struct{}), got: make(map[uint64][]byte), peers: make(map[netip.AddrPort]bool)}
	s.wg.Add(2)
	go s.receive()
	go s.stream()
	t.Cleanup(func() {
		close(s.stop)
		_ = c.Close()
		s.wg.Wait()
	})
	return s
}

func (s *streamer) addr() string { return s.conn.LocalAddr().String() }

func (s *streamer) receive() {
	defer s.wg.Done()
	buf := make([]byte, msgBufSize)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if n < 8 {
			continue
		}
		seq := binary.BigEndian.Uint64(buf)
		s.mu.Lock()
		if _, ok := s.got[seq]; ok {
			s.dups++
		}
		s.got[seq] = append([]byte(nil), buf[:n]...)
		s.peers[from] = true
		s.mu.Unlock()
	}
}

func (s *streamer) stream() {
	defer s.wg.Done()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	status := []byte("status: playing")
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		s.mu.Lock()
		for p := range s.peers {
			_, _ = s.conn.WriteToUDPAddrPort(status, p)
		}
		s.mu.Unlock()
	}
}

func (s *streamer) count() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.got))
}

// digest is the SHA-256 of datagrams 0 … n-1 in sequence order, and how
// many of them arrived (twice counts once; dups says how many were).
func (s *streamer) digest(n int) (sum string, arrived, dups int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := sha256.New()
	for i := range n {
		if p, ok := s.got[uint64(i)]; ok {
			h.Write(p)
			arrived++
		}
	}
	return hex.EncodeToString(h.Sum(nil)), arrived, s.dups
}

// seqClient sends numbered datagrams (8 bytes of sequence number, then a
// pattern) and hashes what it sent.
type seqClient struct {
	*client
	next int
	sent [][]byte
}

func (c *seqClient) sendN(to net.Addr, n int) {
	c.t.Helper()
	for range n {
		p := binary.BigEndian.AppendUint64(nil, uint64(c.next))
		p = append(p, pattern(200+c.next%50)...)
		c.send(to, p)
		c.sent = append(c.sent, p)
		c.next++
	}
}

func (c *seqClient) digest() string {
	h := sha256.New()
	for _, p := range c.sent {
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestDrainEndsSessionWhenClientQuiet: a listener that drains (retired by
// a reload, or the old process of an upgrade) ends a session once its
// client has been quiet for the session timeout, even while the upstream
// keeps sending: the old relay drains by itself instead of at
// hard_stop_after. Nothing the client sends is lost: across the reload it
// reaches its old session, across the upgrade the new process, and after
// the old session's end the successor. Fails before: the old relay still
// had its session 4 s (20 timeouts) after the client went quiet.
func TestDrainEndsSessionWhenClientQuiet(t *testing.T) {
	for _, reload := range []bool{true, false} {
		name := map[bool]string{true: "reload", false: "upgrade"}[reload]
		t.Run(name, func(t *testing.T) { testDrainClientQuiet(t, reload) })
	}
}

func testDrainClientQuiet(t *testing.T, reload bool) {
	checkLeaks(t)
	// Long against a pause of the busy test process: with 200 ms, a pause
	// of the stream of more than half the timeout just before the end made
	// it a plain idle end (no upstream traffic in the second half of the
	// client's quiet), and one of more than the timeout expired the
	// successor's session, which only the stream keeps alive ('want one
	// session ended client_idle', 'successor opened 2 sessions', 1 of 2
	// runs of the package at load 14).
	const timeout = time.Second
	up := startStreamer(t)
	oldLogs := &testworld.LogBuffer{}
	cfg := Config{Name: "rtb", Listen: []string{"127.0.0.1:0"}, Upstreams: [][]string{{up.addr()}},
		SessionTimeout: timeout, Log: zerolog.New(oldLogs)}
	old := serveOn(t, cfg, defaultNetwork(&cfg))
	to := old.Addrs()[0]
	c := &seqClient{client: newClient(t, "127.0.0.2")}

	c.sendN(to, 10)
	// The client's last datagram to the old relay is out. After an upgrade
	// this stays so: the next ones go to the new process.
	quiet := time.Now()
	waitStat(t, "datagrams at the upstream", up.count, 10)
	waitStat(t, "the upstream's stream back to the client", old.Stats().DatagramsOut.Load, 1)

	// The handover: a reload's successor takes the socket over and sends
	// the old clients to their old sessions; an upgrade's new process
	// reads the socket and the old one stops reading.
	files, err := old.Files()
	if err != nil {
		t.Fatal(err)
	}
	next := cfg
	next.Inherit, next.Log = files, zerolog.Nop()
	if reload {
		next.Replaces = []*Relay{old}
	}
	succ, err := Listen(next)
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- succ.Serve() }()
	t.Cleanup(func() { _ = succ.Close(); <-served })
	if reload {
		succ.TakeOver()
	} else {
		old.Yield()
	}
	drained := make(chan error, 1)
	go func() { drained <- old.Shutdown(context.Background()) }()
	waitDraining(t, old)

	c.sendN(to, 10)
	if reload {
		quiet = time.Now() // these went to the old session too
	}
	waitStat(t, "datagrams at the upstream", up.count, 20)
	if reload {
		if n := old.Stats().DatagramsIn.Load(); n != 20 {
			t.Errorf("old relay forwarded %d of the client's 20 datagrams, want all (its session goes on)", n)
		}
	} else if n := succ.Stats().DatagramsIn.Load(); n != 10 {
		t.Errorf("new process forwarded %d of the 10 datagrams sent after the upgrade", n)
	}

	// The client is quiet; the upstream streams on.
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("old relay Shutdown = %v", err)
		}
	case <-time.After(20 * timeout):
		t.Fatalf("old relay still has %d sessions %v after its client went quiet (the upstream sent %d datagrams back meanwhile)",
			old.Stats().SessionsActive.Load(), time.Since(quiet).Round(time.Millisecond), old.Stats().DatagramsOut.Load())
	}
	if took := time.Since(quiet); took < timeout {
		t.Errorf("old session ended %v after its client's last datagram, before the %v timeout", took, timeout)
	}
	if n := oldLogs.Count(`"end":"client_idle"`, `"confirmed":true`, `"datagrams_in":`+fmt.Sprint(map[bool]int{true: 20, false: 10}[reload])); n != 1 {
		t.Errorf("want one session ended client_idle on the old relay:\n%s", oldLogs)
	}
	if n := old.Stats().SessionsExpired.Load(); n != 1 {
		t.Errorf("old relay SessionsExpired = %d, want 1", n)
	}

	// The client speaks again: the successor serves it.
	c.sendN(to, 10)
	waitStat(t, "datagrams at the upstream", up.count, 30)
	sum, arrived, dups := up.digest(30)
	if arrived != 30 || dups != 0 || sum != c.digest() {
		t.Errorf("upstream got %d of 30 datagrams (%d twice), sha256 %s, want %s", arrived, dups, sum, c.digest())
	}
	if n := succ.Stats().SessionsCreated.Load(); n != 1 {
		t.Errorf("successor opened %d sessions, want 1", n)
	}
}
