package daemon

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"
)

// limitsYAML is one listener "web" with max_conns 3 and per_source
// max_conns 2; %[2]s is its mode, %[4]s its extra keys.
const limitsYAML = `listeners:
  - {name: web, mode: %[2]s, listen: "127.0.0.1:%[1]d", upstream: "%[3]s", max_conns: 3, per_source: {max_conns: 2}%[4]s}
`

// limitsMode is how TestReloadHoldsLimits talks to a mode's upstream.
type limitsMode struct {
	mode     string
	upstream func(t *testing.T, tag string) string // an upstream's address
	extra    func(t *testing.T) string             // the listener's extra keys
	greeting bool                                  // the upstream speaks first (FTP's 220)
	reply    func(tag, msg string) string          // what comes back for msg
}

var limitsModes = []limitsMode{
	{mode: "tcp", upstream: tagEcho, extra: noKeys, reply: tagged},
	{mode: "raw", upstream: tagEcho, extra: noKeys, reply: tagged},
	{mode: "ftp", upstream: func(t *testing.T, _ string) string { return fakeFTP(t) },
		extra: func(t *testing.T) string {
			p := freePort(t, "tcp")
			return fmt.Sprintf(`, ftp: {data_ports: "%d-%d"}`, p, p)
		},
		greeting: true, reply: func(_, msg string) string { return "200 " + msg }},
}

func tagEcho(t *testing.T, tag string) string { return newTCPEcho(t, tag).addr() }
func noKeys(*testing.T) string                { return "" }
func tagged(tag, msg string) string           { return tag + ":" + msg }

// exchange connects from src and sends one line; it returns the
// connection and the reply, or nil and "" if the relay closed it first.
func (m limitsMode) exchange(t *testing.T, src, at string) (*lineConn, string) {
	t.Helper()
	c, err := dialLine(t, src, at)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	if m.greeting {
		if line, err := c.r.ReadString('\n'); err != nil {
			return nil, ""
		} else if !strings.HasPrefix(line, "220 ") {
			t.Fatalf("greeting %q", line)
		}
	}
	got, err := c.roundTrip("x" + src)
	if err != nil {
		return nil, ""
	}
	return c, strings.TrimSpace(got)
}

// open checks that a client from src is served by the upstream tagged
// tag, and returns its connection.
func (m limitsMode) open(t *testing.T, src, at, tag string) *lineConn {
	t.Helper()
	c, got := m.exchange(t, src, at)
	if want := m.reply(tag, "x"+src); got != want {
		t.Fatalf("client from %s read %q, want %q (empty: closed by the relay)", src, got, want)
	}
	return c
}

// refused checks that a client from src is closed before any exchange.
func (m limitsMode) refused(t *testing.T, src, at string) {
	t.Helper()
	if _, got := m.exchange(t, src, at); got != "" {
		t.Fatalf("client from %s read %q, want it refused", src, got)
	}
}

// TestReloadHoldsLimits: a tcp (the front's), raw and ftp listener with
// max_conns 3 and per_source max_conns 2, whose 127.0.0.2 holds 2
// connections, is reloaded with another upstream. The new listener counts
// the 2 still open on the old one: a third from 127.0.0.2 is refused as
// per_source (log line, metric), one from 127.0.0.3 is accepted, one from
// 127.0.0.4 is refused as max_conns (log line, metric); once an old one
// ends, 127.0.0.2 is accepted again. Once all have ended, the counts are
// back at zero: 3 clients are accepted again, 2 from 127.0.0.2, and a
// fourth is refused.
func TestReloadHoldsLimits(t *testing.T) {
	for _, m := range limitsModes {
		t.Run(m.mode, func(t *testing.T) {
			t.Cleanup(test.CheckRoutines(t))
			port, extra, admin := freePort(t, "tcp"), m.extra(t), adminOn(t)
			render := func(up string) string { return admin + fmt.Sprintf(limitsYAML, port, m.mode, up, extra) }
			w := startWorld(t, render(m.upstream(t, "old")), nil)
			at := fmt.Sprintf("127.0.0.1:%d", port)
			old := []*lineConn{m.open(t, "127.0.0.2", at, "old"), m.open(t, "127.0.0.2", at, "old")}

			w.writeFile("relay.yaml", render(m.upstream(t, "new")))
			if err := w.d.Reload(); err != nil {
				t.Fatal(err)
			}
			w.logs.Wait(t, `"message":"reload applied"`, `"changed":["web"]`)
			m.refused(t, "127.0.0.2", at)
			w.logs.Wait(t, `"message":"client refused"`, `"client":"127.0.0.2:`,
				`"reason":"per_source: too many connections from this source"`)
			other := m.open(t, "127.0.0.3", at, "new")
			m.refused(t, "127.0.0.4", at)
			w.logs.Wait(t, `"message":"connection refused: max_conns reached"`, `"client":"127.0.0.4:`, `"max_conns":3`)
			metricsSay(t, w, `relay_connections_rejected_total{listener="web",reason="per_source"} 1`,
				`relay_connections_rejected_total{listener="web",reason="max_conns"} 1`,
				`relay_draining_connections{listener="web"} 2`)

			old[0].Close()
			metricsSay(t, w, `relay_draining_connections{listener="web"} 1`)
			again := m.open(t, "127.0.0.2", at, "new") // its place came back
			for _, c := range []*lineConn{old[1], other, again} {
				c.Close()
			}
			w.logs.Wait(t, `"listener":"web"`, "retired listener drained")
			metricsSay(t, w, `relay_connections_active{listener="web"} 0`)

			for _, src := range []string{"127.0.0.2", "127.0.0.2", "127.0.0.3"} {
				m.open(t, src, at, "new") // refused if a count leaked
			}
			m.refused(t, "127.0.0.5", at) // served if a place was released twice
			metricsSay(t, w, `relay_connections_rejected_total{listener="web",reason="per_source"} 1`,
				`relay_connections_rejected_total{listener="web",reason="max_conns"} 2`)
			_ = w.d.Close()
		})
	}
}

// udpLimitsYAML is one udp listener "rtb" with max_sessions 3 and
// max_sessions_per_source 2 to the upstream %[2]s, its session_timeout
// %[3]s.
const udpLimitsYAML = `listeners:
  - {name: rtb, mode: udp, listen: "127.0.0.1:%[1]d", upstream: "%[2]s", udp: {session_timeout: %[3]s, max_sessions: 3, max_sessions_per_source: 2}}
`

// udpServed checks that a datagram of c comes back from the upstream
// tagged tag.
func udpServed(t *testing.T, c *net.UDPConn, at, tag string) {
	t.Helper()
	msg := "x" + c.LocalAddr().String()
	if got, err := udpRoundTrip(c, at, msg, 5*time.Second); err != nil || got != tag+":"+msg {
		t.Fatalf("%s read %q (%v), want %q", c.LocalAddr(), got, err, tag+":"+msg)
	}
}

// TestReloadHoldsUDPLimits: a udp listener with max_sessions 3 and
// max_sessions_per_source 2, whose 127.0.0.2 holds 2 sessions, is
// reloaded with another upstream. The new listener counts the 2 sessions
// still open on the old one (their clients are still served by the old
// upstream): a third from 127.0.0.2 is dropped as source_limit, one from
// 127.0.0.3 is served, one from 127.0.0.4 is dropped as session_limit.
// Once the old sessions have ended, the counts are back: 2 from
// 127.0.0.2 are served and a fourth session is dropped. Fails before:
// the third session of 127.0.0.2 was served.
func TestReloadHoldsUDPLimits(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	port := freePort(t, "udp")
	admin := adminOn(t)
	render := func(up, timeout string) string { return admin + fmt.Sprintf(udpLimitsYAML, port, up, timeout) }
	w := startWorld(t, render(newUDPEcho(t, "old").addr(), "1s"), nil)
	at := fmt.Sprintf("127.0.0.1:%d", port)
	old := []*net.UDPConn{udpClient(t, "127.0.0.2"), udpClient(t, "127.0.0.2")}
	for _, c := range old {
		udpServed(t, c, at, "old")
	}

	// The old sessions drain 1 s after their clients' last datagram; the
	// new ones last the test.
	w.writeFile("relay.yaml", render(newUDPEcho(t, "new").addr(), "1m"))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	w.logs.Wait(t, `"message":"reload applied"`, `"changed":["rtb"]`)
	oldServed := func() {
		t.Helper()
		for _, c := range old { // the old sessions run on, on the old upstream
			udpServed(t, c, at, "old")
		}
	}
	dropped := func(src string) {
		t.Helper()
		if _, err := udpClient(t, src).WriteToUDP([]byte("let me in"), net.UDPAddrFromAddrPort(netip.MustParseAddrPort(at))); err != nil {
			t.Fatal(err)
		}
	}
	oldServed()
	dropped("127.0.0.2")
	metricsSay(t, w, `relay_udp_datagrams_dropped_total{listener="rtb",reason="source_limit"} 1`)
	udpServed(t, udpClient(t, "127.0.0.3"), at, "new")
	oldServed()
	dropped("127.0.0.4")
	metricsSay(t, w, `relay_udp_datagrams_dropped_total{listener="rtb",reason="session_limit"} 1`,
		`relay_draining_connections{listener="rtb"} 2`, `relay_udp_sessions_created_total{listener="rtb"} 3`)

	w.logs.Wait(t, `"listener":"rtb"`, "retired listener drained") // the old clients went quiet
	for _, src := range []string{"127.0.0.2", "127.0.0.2"} {
		udpServed(t, udpClient(t, src), at, "new") // dropped if a count leaked
	}
	dropped("127.0.0.5") // served if a place was given back twice
	metricsSay(t, w, `relay_udp_datagrams_dropped_total{listener="rtb",reason="session_limit"} 2`,
		`relay_udp_datagrams_dropped_total{listener="rtb",reason="source_limit"} 1`,
		`relay_udp_sessions_created_total{listener="rtb"} 5`)
	_ = w.d.Close()
}

// rateYAML is listener "web" whose sources may open %[3]s connections
// (burst %[4]d); %[5]s is an extra listener line.
const rateYAML = `listeners:
  - {name: web, mode: tcp, listen: "127.0.0.1:%[1]d", upstream: "%[2]s", per_source: {rate: %[3]s, burst: %[4]d}}
%[5]s`

// TestFailedReloadKeepsRate: 127.0.0.2 spends its burst of 2 at 1/m and
// its third connection is refused. A reload to 100/s with a burst of 1,
// which fails on a second listener whose port another program holds,
// leaves the rate in force: the next connection of 127.0.0.2 is refused
// too, as it would have been without the reload (the minute it waits for
// its next token is far longer than the test). Fails before the limit
// Table waited for its listener to serve to convert the shared stamps: the
// failed reload had brought them to 100/s and the old listener admitted
// 127.0.0.2 at once.
func TestFailedReloadKeepsRate(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	port, up := freePort(t, "tcp"), newTCPEcho(t, "web").addr()
	admin := adminOn(t)
	w := startWorld(t, admin+fmt.Sprintf(rateYAML, port, up, "1/m", 2, ""), nil)
	at := fmt.Sprintf("127.0.0.1:%d", port)
	for range 2 {
		if got := tcpOutcome(t, "127.0.0.2", at); got != "web:hello" {
			t.Fatalf("127.0.0.2 within its burst: %q", got)
		}
	}
	if got := tcpOutcome(t, "127.0.0.2", at); got != "closed" {
		t.Fatalf("127.0.0.2 past its burst: %q, want closed", got)
	}
	metricsSay(t, w, `relay_connections_rejected_total{listener="web",reason="per_source"} 1`)

	busy := holdPort(t, "127.0.0.1:0")
	w.writeFile("relay.yaml", admin+fmt.Sprintf(rateYAML, port, up, "100/s", 1,
		fmt.Sprintf("  - {name: late, mode: tcp, listen: %q, upstream: %q}\n", busy, up)))
	if err := w.d.Reload(); err == nil {
		t.Fatal("a reload onto a port another program holds succeeded")
	}
	w.logs.Wait(t, `"message":"reload: cannot bind, nothing changed"`)
	if got := tcpOutcome(t, "127.0.0.2", at); got != "closed" {
		t.Fatalf("127.0.0.2 after the failed reload: %q, want closed as before it (1/m, burst spent)", got)
	}
	metricsSay(t, w, `relay_connections_rejected_total{listener="web",reason="per_source"} 2`,
		`relay_connections_accepted_total{listener="web"} 2`)
	_ = w.d.Close()
}
