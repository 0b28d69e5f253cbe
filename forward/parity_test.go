package forward

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
	"github.com/edgerelay/relay/limit"
)

// TestDefencesSamePerPath: the same scenario leaves the same counters,
// upstream states, failover counts and log lines whichever path served
// it: the front (a plain tcp listener), the engine from accept on (the
// path of TLS and PROXY-header listeners), and a raw listener.
func TestDefencesSamePerPath(t *testing.T) {
	checkLeaks(t) // once for all: each check waits for goroutines to settle
	type scenario struct {
		name  string
		cfg   func(t *testing.T, c *Config)
		drive func(t *testing.T, r *relay)
		want  string
	}
	echoAndClose := func(t *testing.T, r *relay) {
		c := r.dial(t, 0)
		if got := roundTrip(t, c, "x"); got != "x" {
			t.Fatalf("echo %q", got)
		}
		c.Close()
	}
	// holdAndRefuse keeps one client open, sees a second closed and
	// counted by refused, then lets the first go.
	holdAndRefuse := func(refused func(*Stats) uint64) func(*testing.T, *relay) {
		return func(t *testing.T, r *relay) {
			c := r.dial(t, 0)
			if got := roundTrip(t, c, "x"); got != "x" {
				t.Fatalf("echo %q", got)
			}
			expectClosed(t, r.dial(t, 0), 2*time.Second)
			world.Eventually(t, "the refusal counted", func() bool { return refused(r.Stats()) == 1 })
			c.Close()
		}
	}
	// bulk fills the front's buffer, so the front hands it to the engine
	// mid-stream: its bytes count once, in one access line.
	bulk := func(t *testing.T, r *relay) {
		c := r.dial(t, 0)
		payload := bytes.Repeat([]byte("0123456789abcdef"), bulkSize/16)
		wrote := make(chan error, 1)
		go func() {
			_, err := c.Write(payload)
			c.CloseWrite()
			wrote <- err
		}()
		c.SetReadDeadline(time.Now().Add(world.WaitLimit))
		got, err := io.ReadAll(c)
		if werr := <-wrote; werr != nil || err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("echo of %d bytes: got %d, write %v, read %v", len(payload), len(got), werr, err)
		}
		c.Close()
	}
	scenarios := []scenario{
		{"bulk", func(t *testing.T, c *Config) {
			c.Upstreams = [][]string{{world.NewBackend(t, world.Echo).Addr()}}
		}, bulk,
			"accepted=1 acl=0 per_source=0 max_conns=0 dial_failures=0 active=0 bytes=102400/102400 u0=up/0 unreachable=0 down=0 outage=0 refused=0 bulk_lines=1"},
		{"refused primary", func(t *testing.T, c *Config) {
			c.Upstreams = [][]string{{world.DeadAddr(t), world.NewBackend(t, world.Echo).Addr()}}
		}, echoAndClose,
			"accepted=1 acl=0 per_source=0 max_conns=0 dial_failures=1 active=0 bytes=1/1 u0=down/1 u1=up/0 unreachable=0 down=1 outage=0 refused=0 bulk_lines=0"},
		{"silent primary", func(t *testing.T, c *Config) {
			c.Upstreams = [][]string{{world.NewSilent(t).Addr(), world.NewBackend(t, world.Echo).Addr()}}
			c.ConnectTimeout = 300 * time.Millisecond
		}, echoAndClose,
			"accepted=1 acl=0 per_source=0 max_conns=0 dial_failures=1 active=0 bytes=1/1 u0=down/1 u1=up/0 unreachable=0 down=1 outage=0 refused=0 bulk_lines=0"},
		{"every upstream refused", func(t *testing.T, c *Config) {
			c.Upstreams = [][]string{{world.DeadAddr(t), world.DeadAddr(t)}}
		}, func(t *testing.T, r *relay) {
			for range 2 {
				expectClosed(t, r.dial(t, 0), 2*time.Second)
			}
			r.logs.WaitCount(t, 2, `"end":"upstream_unreachable"`)
		},
			"accepted=2 acl=0 per_source=0 max_conns=0 dial_failures=2 active=0 bytes=0/0 u0=down/2 u1=down/2 unreachable=2 down=2 outage=1 refused=0 bulk_lines=0"},
		{"acl", func(t *testing.T, c *Config) {
			c.Upstreams = [][]string{{world.NewBackend(t, world.Echo).Addr()}}
			c.Admit = func(netip.AddrPort) bool { return false }
		}, func(t *testing.T, r *relay) {
			expectClosed(t, r.dial(t, 0), 2*time.Second)
			world.Eventually(t, "the rejection counted", func() bool { return r.Stats().Rejected.Load() == 1 })
		},
			"accepted=0 acl=1 per_source=0 max_conns=0 dial_failures=0 active=0 bytes=0/0 u0=up/0 unreachable=0 down=0 outage=0 refused=0 bulk_lines=0"},
		{"per_source", func(t *testing.T, c *Config) {
			c.Upstreams = [][]string{{world.NewBackend(t, world.Echo).Addr()}}
			c.PerSource = limit.Config{MaxConns: 1}
		}, holdAndRefuse(func(st *Stats) uint64 { return st.RejectedPerSource.Load() }),
			"accepted=1 acl=0 per_source=1 max_conns=0 dial_failures=0 active=0 bytes=1/1 u0=up/0 unreachable=0 down=0 outage=0 refused=0 bulk_lines=0"},
		{"max_conns", func(t *testing.T, c *Config) {
			c.Upstreams = [][]string{{world.NewBackend(t, world.Echo).Addr()}}
			c.MaxConns = 1
		}, holdAndRefuse(func(st *Stats) uint64 { return st.Refused.Load() }),
			"accepted=1 acl=0 per_source=0 max_conns=1 dial_failures=0 active=0 bytes=1/1 u0=up/0 unreachable=0 down=0 outage=0 refused=1 bulk_lines=0"},
	}
	paths := []struct {
		name   string
		raw    bool
		engine bool // keep the front out
	}{{"front", false, false}, {"engine", false, true}, {"raw", true, false}}
	for _, sc := range scenarios {
		for _, path := range paths {
			t.Run(sc.name+"/"+path.name, func(t *testing.T) {
				var cfg Config
				sc.cfg(t, &cfg)
				if path.raw {
					cfg.Raw = &Raw{}
				}
				var refusals refusals
				cfg.Refused = refusals.record
				r := listenRelay(t, cfg)
				if path.engine {
					r.engineOnly()
				}
				r.serve(t)
				<-r.Started()
				switch front := r.front != nil; {
				case path.name == "front" && !front:
					t.Skip("no front on this box")
				case path.name != "front" && front:
					t.Fatal("served by the front")
				}
				sc.drive(t, r)
				world.Eventually(t, "every connection ended", func() bool { return r.Stats().Active.Load() == 0 })
				if got := outcome(r); got != sc.want {
					t.Errorf("\n got %s\nwant %s\n%s", got, sc.want, r.logs)
				}
				if got := refusals.get(); sc.name == "per_source" &&
					(len(got) != 1 || got[0] != "127.0.0.1 per_source: too many connections from this source") {
					t.Errorf("refusals %q", got)
				}
			})
		}
	}
}

// bulkSize is the bulk scenario's bytes each way: more than the front's
// buffer.
const bulkSize = 100 << 10

// outcome sums up what a listener's counters, its upstreams and its log
// say.
func outcome(r *relay) string {
	st := r.Stats()
	var b strings.Builder
	fmt.Fprintf(&b, "accepted=%d acl=%d per_source=%d max_conns=%d dial_failures=%d active=%d bytes=%d/%d",
		st.Accepted.Load(), st.Rejected.Load(), st.RejectedPerSource.Load(), st.Refused.Load(),
		st.DialFailures.Load(), st.Active.Load(), st.BytesIn.Load(), st.BytesOut.Load())
	for i, u := range r.ups.Snapshot() {
		state := "up"
		if !u.Up {
			state = "down"
		}
		fmt.Fprintf(&b, " u%d=%s/%d", i, state, u.Failovers)
	}
	fmt.Fprintf(&b, " unreachable=%d down=%d outage=%d refused=%d bulk_lines=%d",
		r.logs.Count(`"end":"upstream_unreachable"`), r.logs.Count(`"message":"upstream down"`),
		r.logs.Count("every upstream down"), r.logs.Count(`"message":"connection refused: max_conns reached"`),
		r.logs.Count(fmt.Sprintf(`"bytes_in":%d,"bytes_out":%d`, bulkSize, bulkSize)))
	return b.String()
}
