package daemon

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pion/transport/v3/test"
)

// limitsYAML is one listener "web" with max_conns 3 and per_source
// max_conns 2; %[2]s is its mode, %[4]s its extra keys.
const limitsYAML = `admin: {listen: "127.0.0.1:0"}
listeners:
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
			port, extra := freePort(t, "tcp"), m.extra(t)
			render := func(up string) string { return fmt.Sprintf(limitsYAML, port, m.mode, up, extra) }
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
