package forward

import (
	"net"
	"slices"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
	"github.com/edgerelay/relay/limit"
)

// reloadHeld plays a reload of the listener "web": a successor made by
// with on old's sockets (Files, Inherit, Replaces) serves, and old stops
// accepting, as the daemon does.
func reloadHeld(t *testing.T, old *relay, cfg Config, with func(*relay)) *relay {
	t.Helper()
	files, err := old.Files()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.Inherit, cfg.Replaces = []string{old.addr(0)}, files, []*Listener{old.Listener}
	next := listenRelay(t, cfg)
	files[0].Close()
	with(next)
	next.serve(t)
	<-next.Started()
	old.StopAccepting()
	return next
}

// TestReloadHoldsLimits: a listener with max_conns 3 and per-source
// max_conns 2 whose 127.0.0.2 holds 2 connections is replaced by one with
// another upstream. The successor counts the 2 still open on the old one:
// a third from 127.0.0.2 is refused as per_source, one from 127.0.0.3 is
// accepted (3 open now), one from 127.0.0.4 is refused as max_conns; once
// an old connection ends, 127.0.0.2 is accepted again. When all have
// ended, both shared counts are back at zero. On each path that admits:
// the front, the engine, raw mode.
func TestReloadHoldsLimits(t *testing.T) {
	paths := []struct {
		name string
		with func(*relay)
		raw  *Raw
	}{
		{"front", func(*relay) {}, nil},
		{"engine", (*relay).engineOnly, nil},
		{"raw", func(*relay) {}, &Raw{}},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			checkLeaks(t)
			oldB, newB := world.NewBackend(t, world.Echo), world.NewBackend(t, world.Echo)
			var refused refusals
			cfg := Config{Name: "web", Upstreams: [][]string{{oldB.Addr()}}, MaxConns: 3,
				PerSource: limit.Config{MaxConns: 2}, Refused: refused.record, Raw: p.raw}
			old := listenRelay(t, cfg)
			p.with(old)
			if p.name == "front" && !old.useFront {
				t.Skip("no front on this system")
			}
			old.serve(t)
			held := []net.Conn{dialFrom(t, "127.0.0.2", old.addr(0)), dialFrom(t, "127.0.0.2", old.addr(0))}
			for _, c := range held {
				if got := roundTrip(t, c, "old"); got != "old" {
					t.Fatalf("echo %q", got)
				}
			}

			cfg.Upstreams = [][]string{{newB.Addr()}}
			next := reloadHeld(t, old, cfg, p.with)
			at := next.addr(0)
			expectClosed(t, dialFrom(t, "127.0.0.2", at), 2*time.Second)
			other := dialFrom(t, "127.0.0.3", at)
			if got := roundTrip(t, other, "new"); got != "new" {
				t.Fatalf("127.0.0.3 after the reload: echo %q", got)
			}
			expectClosed(t, dialFrom(t, "127.0.0.4", at), 2*time.Second)
			next.logs.Wait(t, `"end":"refused"`, `"client":"127.0.0.4:`, `"max_conns":3`,
				`"message":"connection refused: max_conns reached"`)
			want := []string{"127.0.0.2 per_source: too many connections from this source"}
			if got := refused.get(); !slices.Equal(got, want) {
				t.Errorf("Refused hook got %q, want %q", got, want)
			}
			if ps, mc := next.Stats().RejectedPerSource.Load(), next.Stats().Refused.Load(); ps != 1 || mc != 1 {
				t.Errorf("successor refused %d per_source and %d max_conns, want 1 and 1", ps, mc)
			}

			held[0].Close()
			world.Eventually(t, "the old connection's end", func() bool { return old.Stats().Active.Load() == 1 })
			again := dialFrom(t, "127.0.0.2", at)
			if got := roundTrip(t, again, "again"); got != "again" {
				t.Fatalf("127.0.0.2 once an old connection ended: echo %q", got)
			}
			if n := newB.Accepted(); n != 2 {
				t.Errorf("new upstream accepted %d connections, want 2 (none for the refused)", n)
			}

			for _, c := range []net.Conn{held[1], other, again} {
				c.Close()
			}
			for _, r := range []*relay{old, next} {
				world.Eventually(t, "the relays' connections ended", func() bool { return r.Stats().Active.Load() == 0 })
			}
			if n, s := next.held.Load(), next.limits.Len(); n != 0 || s != 0 {
				t.Errorf("%d connections and %d sources held once all ended, want 0 and 0", n, s)
			}
			if next.held != old.held {
				t.Error("the successor does not share the max_conns count")
			}
		})
	}
}

// TestReloadKeepsRateAllowance: 127.0.0.2 spends its burst of 2 (at one a
// minute) and the listener is replaced with another upstream: with the
// same rate, its next connection is refused as too fast; with a burst of
// 3, one more fits first. 127.0.0.3 is served throughout.
func TestReloadKeepsRateAllowance(t *testing.T) {
	tests := []struct {
		name  string
		burst int
		fit   int
	}{
		{"same rate", 2, 0},
		{"bigger burst", 3, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			oldB, newB := world.NewBackend(t, world.Echo), world.NewBackend(t, world.Echo)
			var refused refusals
			cfg := Config{Name: "web", Upstreams: [][]string{{oldB.Addr()}},
				PerSource: limit.Config{Rate: 1.0 / 60, Burst: 2}, Refused: refused.record}
			old := startRelay(t, cfg)
			for range 2 {
				c := dialFrom(t, "127.0.0.2", old.addr(0))
				if got := roundTrip(t, c, "old"); got != "old" {
					t.Fatalf("echo %q", got)
				}
				c.Close()
			}
			cfg.Upstreams, cfg.PerSource.Burst = [][]string{{newB.Addr()}}, tc.burst
			next := reloadHeld(t, old, cfg, func(*relay) {})
			for range tc.fit {
				if got := roundTrip(t, dialFrom(t, "127.0.0.2", next.addr(0)), "new"); got != "new" {
					t.Fatalf("echo %q", got)
				}
			}
			expectClosed(t, dialFrom(t, "127.0.0.2", next.addr(0)), 2*time.Second)
			if got := roundTrip(t, dialFrom(t, "127.0.0.3", next.addr(0)), "other"); got != "other" {
				t.Fatalf("127.0.0.3: echo %q", got)
			}
			want := []string{"127.0.0.2 per_source: connection rate of this source exceeded"}
			if got := refused.get(); !slices.Equal(got, want) {
				t.Errorf("Refused hook got %q, want %q", got, want)
			}
			if n := newB.Accepted(); n != tc.fit+1 {
				t.Errorf("new upstream accepted %d, want %d", n, tc.fit+1)
			}
		})
	}
}
