//go:build linux

package udpstream

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	testworld "github.com/edgerelay/relay/internal/world"
)

// limitsWorld is a relay "rtb" with MaxSessions 3 and MaxSessionsPerSource
// 2 whose 127.0.0.2 holds 2 sessions, and its successor on a reload.
type limitsWorld struct {
	t         *testing.T
	old, next *Relay
	to        net.Addr
	held      []*client  // the clients of the old relay's sessions
	fresh     []*client  // those served by the successor
	drained   chan error // old's Shutdown
}

// newLimitsWorld starts the old relay to upstream "old", opens the two
// sessions of 127.0.0.2, and replaces the relay by one to upstream "new"
// with edit applied, as a reload does.
func newLimitsWorld(t *testing.T, edit func(*Config)) *limitsWorld {
	t.Helper()
	oldUp, newUp := startBackend(t, "old"), startBackend(t, "new")
	cfg := Config{Name: "rtb", Upstreams: [][]string{{oldUp.addr().String()}},
		MaxSessions: 3, MaxSessionsPerSource: 2, SessionTimeout: time.Minute}
	w := &limitsWorld{t: t, old: serveRange(t, cfg)}
	w.to = w.old.Addrs()[0]
	for range 2 {
		c := newClient(t, "127.0.0.2")
		w.wantServed(c, "old")
		w.held = append(w.held, c)
	}
	cfg.Upstreams = [][]string{{newUp.addr().String()}}
	if edit != nil {
		edit(&cfg)
	}
	w.next, w.drained = reload(t, w.old, cfg)
	return w
}

// serveRange serves a relay for cfg on a port number of its own (a
// successor takes over the port of the same Listen entry) until the test
// ends.
func serveRange(t *testing.T, cfg Config) *Relay {
	t.Helper()
	r := listenRange(t, cfg, 1)
	served := make(chan error, 1)
	go func() { served <- r.Serve() }()
	t.Cleanup(func() { _ = r.Close(); <-served })
	return r
}

// reload replaces old by a relay for cfg on old's port, as the daemon
// does: the successor takes over old's socket and serves, old drains.
// The channel receives old's Shutdown result.
func reload(t *testing.T, old *Relay, cfg Config) (*Relay, chan error) {
	t.Helper()
	files, err := old.Files()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.Inherit, cfg.Replaces = []string{old.Addrs()[0].String()}, files, []*Relay{old}
	next := serveOn(t, cfg, defaultNetwork(&cfg))
	for _, f := range files {
		f.Close()
	}
	next.TakeOver()
	drained := make(chan error, 1)
	go func() { drained <- old.Shutdown(context.Background()) }()
	waitDraining(t, old)
	return next, drained
}

// wantServed checks that c's datagram comes back from the upstream tagged tag.
func (w *limitsWorld) wantServed(c *client, tag string) {
	w.t.Helper()
	msg := fmt.Appendf(nil, "from %s", c.addr())
	if e, err := parseEcho(c.exchange(w.to, msg)); err != nil || e.tag != tag || e.sum != sha(msg) {
		w.t.Fatalf("%s: reply %+v %v, want one from upstream %q", c.addr(), e, err, tag)
	}
}

// serve checks that a newcomer from ip gets a session on the successor.
func (w *limitsWorld) serve(ip string) {
	w.t.Helper()
	c := newClient(w.t, ip)
	w.wantServed(c, "new")
	w.fresh = append(w.fresh, c)
}

// drop checks that the successor drops a newcomer from ip for reason.
func (w *limitsWorld) drop(ip string, reason func(*Drops) *atomic.Uint64) {
	w.t.Helper()
	st := w.next.Stats()
	before, created := reason(&st.Drops).Load(), st.SessionsCreated.Load()
	newClient(w.t, ip).send(w.to, []byte("let me in"))
	testworld.Eventually(w.t, fmt.Sprintf("the successor to drop %s's datagram or open its session", ip), func() bool {
		return reason(&st.Drops).Load() > before || st.SessionsCreated.Load() > created
	})
	if n := st.SessionsCreated.Load(); n != created {
		w.t.Fatalf("%s: the successor opened a session for it, want it dropped", ip)
	}
}

// endOld ends the session of the old relay's i-th client as the sweeper
// does when it expires.
func (w *limitsWorld) endOld(i int) {
	w.t.Helper()
	endSessionOf(w.t, w.old, w.held[i].addr())
}

// endSessionOf takes client's session out of r's table and ends it as
// idle, as the sweeper does, and waits until it has given back its places.
func endSessionOf(t *testing.T, r *Relay, client netip.AddrPort) {
	t.Helper()
	p := r.ports[0]
	p.mu.Lock()
	s := p.sessions[client]
	delete(p.sessions, client)
	p.mu.Unlock()
	if s == nil {
		t.Fatalf("%s has no session on %s", client, r.name)
	}
	active := r.stats.SessionsActive.Load()
	s.end(endIdle, nil)
	testworld.Eventually(t, fmt.Sprintf("the end of %s's session", client), func() bool {
		return r.stats.SessionsActive.Load() < active
	})
}

// hasSession reports whether client has a session on r's port.
func hasSession(r *Relay, client netip.AddrPort) bool {
	p := r.ports[0]
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sessions[client] != nil
}

func sourceLimit(d *Drops) *atomic.Uint64  { return &d.SourceLimit }
func sessionLimit(d *Drops) *atomic.Uint64 { return &d.SessionLimit }

// TestReloadHoldsSessionLimits: a relay with max_sessions 3 and
// max_sessions_per_source 2, whose 127.0.0.2 holds 2 sessions, is
// replaced on a reload by one to another upstream, with the same, lower
// or higher limits. The successor counts the 2 sessions still open on the
// old relay against its own limits: a lower one drops newcomers until old
// sessions end below it, a higher one admits at once, and each old
// session gives its places back once when it ends. When every session has
// ended the counts are back at zero: the successor admits max_sessions
// newcomers, one more is dropped.
func TestReloadHoldsSessionLimits(t *testing.T) {
	tests := []struct {
		name           string
		max, perSource int // the successor's
		steps          func(w *limitsWorld)
	}{
		{"same limits", 3, 2, func(w *limitsWorld) {
			w.drop("127.0.0.2", sourceLimit) // the old relay's 2 count
			w.serve("127.0.0.3")
			w.drop("127.0.0.4", sessionLimit) // 2 old + 1 new
			w.endOld(0)
			w.serve("127.0.0.2") // its place came back
			w.drop("127.0.0.2", sourceLimit)
		}},
		{"lower limits", 2, 1, func(w *limitsWorld) {
			w.drop("127.0.0.2", sourceLimit)
			w.drop("127.0.0.3", sessionLimit)
			w.endOld(0)
			w.drop("127.0.0.2", sourceLimit) // 1 old is still its limit
			w.serve("127.0.0.3")
			w.drop("127.0.0.4", sessionLimit)
			w.endOld(1)
			w.serve("127.0.0.2")
		}},
		{"higher limits admit at once", 4, 3, func(w *limitsWorld) {
			w.serve("127.0.0.2")
			w.drop("127.0.0.2", sourceLimit)
			w.serve("127.0.0.3")
			w.drop("127.0.0.4", sessionLimit)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			w := newLimitsWorld(t, func(c *Config) { c.MaxSessions, c.MaxSessionsPerSource = tc.max, tc.perSource })
			tc.steps(w)

			for i, c := range w.held {
				if hasSession(w.old, c.addr()) {
					w.endOld(i)
				}
			}
			if err := <-w.drained; err != nil {
				t.Fatalf("old relay Shutdown = %v", err)
			}
			for _, c := range w.fresh {
				endSessionOf(t, w.next, c.addr())
			}
			if n, s := w.next.held.n.Load(), w.next.limits.Len(); n != 0 || s != 0 {
				t.Errorf("%d sessions and %d sources held once all ended, want 0 and 0", n, s)
			}
			for i := range tc.max {
				w.serve(fmt.Sprintf("127.0.1.%d", i+1)) // dropped if a count leaked
			}
			w.drop("127.0.2.1", sessionLimit) // served if a place was given back twice
		})
	}
}

// TestCloseGivesBackQueuedPlaces: a newcomer still queued for a session
// when the relay closes gives its place under the per-source cap back, in
// the count the relay's successors share (before: the source held it for
// good).
func TestCloseGivesBackQueuedPlaces(t *testing.T) {
	checkLeaks(t)
	cfg := Config{Name: "rtb", Listen: []string{"127.0.0.1:0"}, Upstreams: [][]string{{"127.0.0.1:9"}}}
	r, err := Listen(cfg) // not served: no setupLoop takes the newcomer
	if err != nil {
		t.Fatal(err)
	}
	b := r.net.newBatch()
	defer b.release()
	b.msgs[0].addr, b.msgs[0].buf, b.n = netip.MustParseAddrPort("127.0.0.2:4000"), append(b.msgs[0].buf[:0], "hello"...), 1
	r.ports[0].request(b, 0, 1)
	if n := r.limits.Len(); n != 1 {
		t.Fatalf("the queued newcomer's source is tracked %d times, want 1", n)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if n := r.limits.Len(); n != 0 {
		t.Errorf("%d sources hold places after Close, want 0", n)
	}
	if n := r.Stats().Drops.Draining.Load(); n != 1 {
		t.Errorf("Drops.Draining = %d, want 1 (the queued datagram)", n)
	}
}

// TestReloadKeepsRateAllowance: a source that spent its per_source_rate
// burst (10 datagrams a second) on the old relay gets only what it has
// earned back since from the successor with the same rate, not a fresh
// burst (before: 10 more went through at once).
func TestReloadKeepsRateAllowance(t *testing.T) {
	checkLeaks(t)
	const rate = 10
	cfg := Config{Name: "rtb", Upstreams: [][]string{{startBackend(t, "b").addr().String()}}, PerSourceRate: rate}
	old := serveRange(t, cfg)
	to, c := old.Addrs()[0], newClient(t, "127.0.0.2")
	burst := func(r *Relay, n int) (forwarded uint64) {
		before := old.Stats().DatagramsIn.Load() // the session is the old relay's
		dropped := r.Stats().Drops.SourceRate.Load()
		for i := range n {
			c.send(to, fmt.Appendf(nil, "d%d", i))
		}
		waitStat(t, "every datagram forwarded or dropped", func() uint64 {
			return old.Stats().DatagramsIn.Load() - before + r.Stats().Drops.SourceRate.Load() - dropped
		}, uint64(n))
		return old.Stats().DatagramsIn.Load() - before
	}
	if n := burst(old, 3*rate); n < rate || n > 2*rate {
		t.Fatalf("the old relay forwarded %d of %d datagrams, want its burst, %d", n, 3*rate, rate)
	}
	spent := time.Now()
	next, drained := reload(t, old, cfg)
	forwarded := burst(next, rate)
	elapsed := time.Since(spent)
	if earned := uint64(elapsed.Seconds()*rate) + 1; forwarded > earned {
		t.Errorf("the successor forwarded %d datagrams of the source %v after it spent its burst, want at most the %d earned back",
			forwarded, elapsed.Round(time.Millisecond), earned)
	}
	_ = old.Close() // its session would drain for SessionTimeout
	if err := <-drained; err != nil {
		t.Fatalf("old relay Shutdown = %v", err)
	}
}

// TestReloadEvictsRetiredUnconfirmed: a relay whose table (max_sessions
// 2) is full of sessions its upstream never answered (a spoofed flood) is
// replaced on a reload. The old sessions count against the successor's
// max_sessions, but they are no more protected there than they were: a
// newcomer of the successor takes the place of the oldest of them, and
// the next one's too, and the old relay drains once both are evicted
// (before: the newcomer was dropped as session_limit until the old
// sessions expired).
func TestReloadEvictsRetiredUnconfirmed(t *testing.T) {
	checkLeaks(t)
	up := startSelective(t)
	cfg := Config{Name: "rtb", Upstreams: [][]string{{up.addr()}}, MaxSessions: 2, MaxSessionsPerSource: 10,
		SessionTimeout: time.Minute, UnconfirmedTimeout: time.Minute}
	old := serveRange(t, cfg)
	to, st := old.Addrs()[0], old.Stats()
	silent1, silent2 := newClient(t, "127.0.0.3"), newClient(t, "127.0.0.4")
	silent1.send(to, []byte("flood"))
	waitStat(t, "the first unconfirmed session", st.SessionsCreated.Load, 1)
	silent2.send(to, []byte("flood"))
	testworld.Eventually(t, "the upstream to get the flood", func() bool { return up.ignored.Load() == 2 })

	next, drained := reload(t, old, cfg)
	if !echoFrom(newClient(t, "127.0.0.5"), to, "newcomer", 2*time.Second) {
		t.Fatalf("newcomer not served after a reload of a table full of unconfirmed sessions (dropped: %v)",
			next.Stats().Drops.DropReasons())
	}
	if n := st.SessionsEvicted.Load(); n != 1 {
		t.Fatalf("old relay evicted %d sessions, want 1", n)
	}
	silent1.send(to, []byte("flood again")) // a newcomer now: it evicts silent2
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("old relay Shutdown = %v", err)
		}
	case <-time.After(testworld.WaitLimit):
		t.Fatalf("old relay still has %d sessions (evicted %d)", st.SessionsActive.Load(), st.SessionsEvicted.Load())
	}
	if n := st.SessionsEvicted.Load(); n != 2 {
		t.Errorf("old relay evicted %d sessions, want 2", n)
	}
	nst := next.Stats()
	waitStat(t, "the successor's second session", nst.SessionsCreated.Load, 2)
	if a, n := nst.SessionsActive.Load(), next.held.n.Load(); a != 2 || n != 2 {
		t.Errorf("successor has %d sessions active and %d places held, want 2 and 2", a, n)
	}
}
