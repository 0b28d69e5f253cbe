//go:build linux

package udpstream

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	testworld "github.com/edgerelay/relay/internal/world"
)

// tableSizes is what a relay keeps per client source: sessions and
// newcomers of every port, the per-source session counts, and the queue
// of unconfirmed sessions.
type tableSizes struct {
	sessions, pending, sources, queued, queueCap int
}

func (r *Relay) tableSizes() tableSizes {
	var z tableSizes
	for _, p := range r.ports {
		p.mu.Lock()
		z.sessions += len(p.sessions)
		z.pending += len(p.pending)
		p.mu.Unlock()
	}
	z.sources = r.limits.Len()
	r.unconfirmed.mu.Lock()
	z.queued, z.queueCap = len(r.unconfirmed.queue)-r.unconfirmed.head, cap(r.unconfirmed.queue)
	r.unconfirmed.mu.Unlock()
	return z
}

// floodAddrs sends one datagram from each of n source addresses
// (127.3.x.y, one port), in batches of sendmmsg spread over d.
func floodAddrs(t *testing.T, to *net.UDPAddr, n int, d time.Duration) (sent int) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc := ipv4.NewPacketConn(c)
	const batch = 200
	msgs := make([]ipv4.Message, batch)
	start := time.Now()
	for first := 0; first < n; first += batch {
		if ahead := time.Duration(first)*d/time.Duration(n) - time.Since(start); ahead > 0 {
			time.Sleep(ahead) // pacing, not synchronisation
		}
		ms := msgs[:min(batch, n-first)]
		for k := range ms {
			i := first + k
			cm := ipv4.ControlMessage{Src: net.IPv4(127, 3, byte(i>>8), byte(i))}
			ms[k] = ipv4.Message{Buffers: [][]byte{[]byte("flood")}, OOB: cm.Marshal(), Addr: to}
		}
		for len(ms) > 0 {
			k, err := pc.WriteBatch(ms, 0)
			if err != nil {
				return sent
			}
			sent += k
			ms = ms[k:]
		}
	}
	return sent
}

// TestTablesEmptyAfterManySources: 50 real clients (answered) and then
// 20 000 spoofed source addresses (each sends one datagram the upstream
// never answers) come and go quiet. Once their timeouts pass, every table
// keyed by the client's address is empty again, with no further datagram
// to set a clean-up off: an edge relay sees millions of sources over
// weeks. (The batch pool and recentDrops are fixed in size; the per-source
// rate is a limit.Table, whose expiry limit's tests prove.)
func TestTablesEmptyAfterManySources(t *testing.T) {
	checkLeaks(t)
	up := startSelective(t)
	r, addr, _ := startConntrackRelay(t, up.addr(), func(c *Config) {
		c.SessionTimeout = 400 * time.Millisecond
		c.UnconfirmedTimeout = 100 * time.Millisecond
	})
	st := r.Stats()
	const spoofed, real = 20_000, 50
	confirmed := 0
	for i := range real {
		if echoFrom(newClient(t, fmt.Sprintf("127.2.0.%d", i+1)), addr, "hi", 2*time.Second) {
			confirmed++
		}
	}
	if confirmed < real*9/10 {
		t.Fatalf("only %d of %d real clients were answered", confirmed, real)
	}
	if sent := floodAddrs(t, addr.(*net.UDPAddr), spoofed, 300*time.Millisecond); sent != spoofed {
		t.Fatalf("only %d of %d spoofed datagrams sent", sent, spoofed)
	}
	settled(t, "the flood to be read", func() uint64 {
		return st.SessionsCreated.Load() + st.Drops.SetupBacklog.Load() + st.Drops.SourceLimit.Load()
	})
	if n := st.SessionsCreated.Load(); n < real+100 {
		t.Fatalf("%d sessions opened by %d sources, want the flood's too", n, spoofed+real)
	}
	testworld.Eventually(t, "every session to end", func() bool { return st.SessionsActive.Load() == 0 })
	var z tableSizes
	testworld.Eventually(t, "the tables to empty", func() bool {
		z = r.tableSizes()
		return z.sessions == 0 && z.pending == 0 && z.sources == 0 && z.queued == 0 && z.queueCap <= 1024
	})
	t.Logf("%d sessions opened (%d for the flood), %d datagrams dropped for the backlog; after: %+v",
		st.SessionsCreated.Load(), st.SessionsCreated.Load()-uint64(confirmed), st.Drops.SetupBacklog.Load(), z)
}

// TestSessionTableShrinks: a port's table that held 4 096 sessions (a
// flood that filled MaxSessions) and then emptied gives the memory back:
// a Go map keeps its largest size, so each port of a range kept ~330 KiB
// for good after one flood, 40 MiB for an RTB range of 127 ports.
func TestSessionTableShrinks(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes the heap; TestTablesEmptyAfterManySources covers the counts")
	}
	r, err := Listen(Config{Name: "rtb", Listen: []string{"127.0.0.1:0"}, Upstreams: [][]string{{"127.0.0.1:9"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close() // not served: the test plays the sweeper
	p := r.ports[0]
	base := heapNow()
	p.mu.Lock()
	for i := range DefaultMaxSessions {
		c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 3, byte(i >> 8), byte(i)}), 40000)
		p.sessions[c] = &session{p: p, client: c}
	}
	p.mu.Unlock()
	full := heapNow() - base
	ended := p.expire(int64(time.Hour), int64(time.Second), int64(time.Second), false, nil)
	if len(ended) != DefaultMaxSessions {
		t.Fatalf("%d sessions expired, want all %d", len(ended), DefaultMaxSessions)
	}
	ended = nil
	held := heapNow() - base
	t.Logf("heap held by the session table: %d KiB full, %d KiB once empty", full>>10, held>>10)
	if held > 64<<10 {
		t.Fatalf("the emptied session table holds %d KiB (%d KiB full), want under 64 KiB", held>>10, full>>10)
	}
}

func heapNow() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
