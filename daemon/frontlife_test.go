package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"
	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/config"
	"github.com/edgerelay/relay/internal/world"
)

// These tests follow plain tcp connections through the daemon's lifecycle
// while the front (forward/front_linux.go) holds them, young, or after it
// handed them to the engine: a reload that changes the listener, a mode
// change, a shutdown with its grace, an upgrade.

// bulkLine is longer than the front's buffer: a read of it fills the
// buffer, which sends the connection to the engine at once.
var bulkLine = strings.Repeat("b", 20000)

// frontLifeYAML is one tcp listener "web"; %[3]s holds its extra keys.
const frontLifeYAML = `shutdown_grace: %[4]s
listeners:
  - {name: web, mode: tcp, listen: "127.0.0.1:%[1]d", upstream: "%[2]s"%[3]s}
`

// webWorld starts a daemon on frontLifeYAML at a fresh port, and returns
// it with the port's address and the config for another upstream and
// extra keys on that port, for a reload.
func webWorld(t *testing.T, up, extra string, grace time.Duration) (*relayWorld, string, func(up, extra string) string) {
	t.Helper()
	port, admin := freePort(t, "tcp"), adminOn(t)
	render := func(up, extra string) string { return admin + fmt.Sprintf(frontLifeYAML, port, up, extra, grace) }
	return startWorld(t, render(up, extra), nil), fmt.Sprintf("127.0.0.1:%d", port), render
}

// accessOf returns the fields of the access lines of the connections that
// reached upstream, once n of them are written.
func accessOf(t *testing.T, w *relayWorld, n int, upstream string) []map[string]any {
	t.Helper()
	lines := w.logs.WaitCount(t, n, `"message":"connection closed"`, `"upstream":"`+upstream+`"`)
	out := make([]map[string]any, 0, len(lines))
	for _, line := range lines {
		out = append(out, world.JSONLine(t, line))
	}
	if len(out) != n {
		t.Errorf("%d access lines for %s, want %d:\n%s", len(out), upstream, n, w.logs)
	}
	return out
}

// wantAccess checks that the access line of the client at local says end
// and the bytes each way.
func wantAccess(t *testing.T, lines []map[string]any, local, end string, in, out int) {
	t.Helper()
	n := 0
	for _, f := range lines {
		if f["client"] != local {
			continue
		}
		n++
		if f["end"] != end || f["bytes_in"] != float64(in) || f["bytes_out"] != float64(out) {
			t.Errorf("access line of %s: end=%v bytes_in=%v bytes_out=%v, want %s %d %d",
				local, f["end"], f["bytes_in"], f["bytes_out"], end, in, out)
		}
	}
	if n != 1 {
		t.Errorf("%d access lines for client %s, want 1", n, local)
	}
}

// metricsSay waits until /metrics has every one of want.
func metricsSay(t *testing.T, w *relayWorld, want ...string) {
	t.Helper()
	var body string
	ok := false
	for deadline := time.Now().Add(world.WaitLimit); !ok && time.Now().Before(deadline); {
		_, body = scrape(t, "http://"+w.d.AdminAddr()+"/metrics")
		if ok = missing(body, want) == ""; !ok {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if m := missing(body, want); m != "" {
		t.Fatalf("metrics lack %q:\n%s", m, grepRelay(body))
	}
}

// frontPair opens two connections from src to at, whose upstream echoes
// lines tagged tag: one the front keeps while it is young (a line "y1"
// each way) and one it hands to the engine at once (bulkLine).
func frontPair(t *testing.T, src, at, tag string) (young, bulk *lineConn) {
	t.Helper()
	return dialEcho(t, src, at, tag, "y1"), dialEcho(t, src, at, tag, bulkLine)
}

// dialEcho connects from src to at and checks one echo of msg.
func dialEcho(t *testing.T, src, at, tag, msg string) *lineConn {
	t.Helper()
	c, err := dialLine(t, src, at)
	if err != nil {
		t.Fatal(err)
	}
	wantEcho(t, c, tag, msg)
	return c
}

// wantEcho sends the line msg on c and checks that tag:msg comes back.
func wantEcho(t *testing.T, c *lineConn, tag, msg string) {
	t.Helper()
	if got, err := c.roundTrip(msg); err != nil || got != tag+":"+msg {
		t.Fatalf("client %s sent %d bytes and read %d (%.24q), %v; want them tagged %s",
			c.LocalAddr(), len(msg), len(got), got, err, tag)
	}
}

// TestReloadKeepsFrontConnections: a reload that changes a tcp listener's
// upstream, idle timeout, max_conns and per-source limit while one
// connection is young in the front and another was handed to the engine:
// both run on against the old upstream and end with one access line each
// with their exact bytes; the retired listener gives its slots back and
// the name's active count comes back to 0. The lowered limits count the
// old connections: new clients are refused until both have ended, then
// one is admitted.
func TestReloadKeepsFrontConnections(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	oldB, newB := newTCPEcho(t, "old"), newTCPEcho(t, "new")
	w, at, render := webWorld(t, oldB.addr(), ", max_conns: 2, per_source: {max_conns: 2}, idle_timeout: 1h", 5*time.Second)

	young, bulk := frontPair(t, "127.0.0.2", at, "old")
	if got := tcpOutcome(t, "127.0.0.3", at); got != "closed" {
		t.Fatalf("third client with max_conns 2: %q, want closed", got)
	}

	w.writeFile("relay.yaml", render(newB.addr(), ", max_conns: 1, per_source: {max_conns: 1}, idle_timeout: 30s"))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	wantEcho(t, young, "old", "y2")
	wantEcho(t, bulk, "old", bulkLine)
	metricsSay(t, w, `relay_connections_active{listener="web"} 2`, `relay_draining_connections{listener="web"} 2`)
	// The successor counts the two old ones against its one slot.
	if got := tcpOutcome(t, "127.0.0.4", at); got != "closed" {
		t.Fatalf("new client with 2 old connections open and max_conns 1: %q, want closed", got)
	}

	youngAt, bulkAt := young.LocalAddr().String(), bulk.LocalAddr().String()
	young.Close()
	metricsSay(t, w, `relay_draining_connections{listener="web"} 1`)
	if got := tcpOutcome(t, "127.0.0.4", at); got != "closed" {
		t.Fatalf("new client with 1 old connection open and max_conns 1: %q, want closed", got)
	}
	bulk.Close()
	w.logs.Wait(t, `"listener":"web"`, "retired listener drained")
	lines := accessOf(t, w, 2, oldB.addr())
	wantAccess(t, lines, youngAt, "eof", len("y1\ny2\n"), len("old:y1\nold:y2\n"))
	wantAccess(t, lines, bulkAt, "eof", 2*(len(bulkLine)+1), 2*len("old:"+bulkLine+"\n"))
	metricsSay(t, w, `relay_connections_active{listener="web"} 0`, `relay_draining_connections{listener="web"} 0`,
		`relay_connections_rejected_total{listener="web",reason="max_conns"} 3`)
	held := dialEcho(t, "127.0.0.2", at, "new", "n")
	if got := tcpOutcome(t, "127.0.0.4", at); got != "closed" {
		t.Fatalf("second new client with max_conns 1: %q, want closed", got)
	}
	held.Close()
	metricsSay(t, w, `relay_connections_active{listener="web"} 0`)
	if got := tcpOutcome(t, "127.0.0.4", at); got != "new:hello" {
		t.Fatalf("client once the slot is back: %q", got)
	}
	_ = w.d.Close()
}

// TestShutdownGraceFrontAndEngine: SIGTERM's drain with an idle
// connection young in the front and one handed to the engine: Shutdown
// waits shutdown_grace, not less and not much more, then cuts both, each
// with one access line, end=shutdown and its exact bytes.
func TestShutdownGraceFrontAndEngine(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	b := newTCPEcho(t, "web")
	const grace = 300 * time.Millisecond
	w, at, _ := webWorld(t, b.addr(), "", grace)
	young, bulk := frontPair(t, "", at, "web")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := w.d.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if took := time.Since(start); took < grace || took > grace+2*time.Second {
		t.Errorf("shutdown took %v with a grace of %v", took, grace)
	}
	lines := accessOf(t, w, 2, b.addr())
	wantAccess(t, lines, young.LocalAddr().String(), "shutdown", len("y1\n"), len("web:y1\n"))
	wantAccess(t, lines, bulk.LocalAddr().String(), "shutdown", len(bulkLine)+1, len("web:"+bulkLine+"\n"))
	for _, c := range []*lineConn{young, bulk} {
		if _, err := c.roundTrip("after"); err == nil {
			t.Errorf("client %s still served after the grace", c.LocalAddr())
		}
	}
}

// TestReloadModeChangeKeepsFrontConnection: a reload that turns a tcp
// listener into a raw one (which the front does not serve) while a
// connection is young in the front: it runs on as a tcp forward to its
// old upstream and ends with its one access line; the next client is a
// raw job of the new listener.
func TestReloadModeChangeKeepsFrontConnection(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	oldB, newB := newTCPEcho(t, "old"), newTCPEcho(t, "new")
	w, at, render := webWorld(t, oldB.addr(), "", 5*time.Second)
	young := dialEcho(t, "", at, "old", "1")
	w.writeFile("relay.yaml", strings.Replace(render(newB.addr(), ""), "mode: tcp", "mode: raw", 1))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	wantEcho(t, young, "old", "2")
	if got := tcpOutcome(t, "", at); got != "new:hello" {
		t.Fatalf("new client: %q", got)
	}
	w.logs.Wait(t, `"message":"raw job done"`, `"upstream":"`+newB.addr()+`"`)
	youngAt := young.LocalAddr().String()
	young.Close()
	w.logs.Wait(t, "retired listener drained")
	wantAccess(t, accessOf(t, w, 1, oldB.addr()), youngAt, "eof", len("1\n2\n"), len("old:1\nold:2\n"))
	_ = w.d.Close()
}

// TestUpgradeDrainsFrontConnections plays a binary upgrade in one
// process: a second daemon takes the listen sockets over (listenSockets,
// Takeover), the first yields and drains as drainUpgraded does. The
// connections the first one's front holds, young or handed to the engine,
// run on there until their clients end them, each with one access line
// and its exact bytes; its Shutdown returns only then; new clients reach
// the second daemon.
func TestUpgradeDrainsFrontConnections(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	b := newTCPEcho(t, "web")
	w, at, _ := webWorld(t, b.addr(), "", 5*time.Second)
	young, bulk := frontPair(t, "", at, "web")

	next := startSuccessor(t, w)
	w.d.yield()
	drained := make(chan error, 1)
	go func() { drained <- w.d.Shutdown(context.Background()) }()
	if got := tcpOutcome(t, "", at); got != "web:hello" {
		t.Fatalf("new client after the upgrade: %q", got)
	}
	next.logs.Wait(t, `"message":"connection closed"`, `"bytes_in":6`)
	wantEcho(t, young, "web", "y2")
	wantEcho(t, bulk, "web", bulkLine)
	select {
	case err := <-drained:
		t.Fatalf("the old daemon stopped (%v) while its connections were open", err)
	default:
	}
	youngAt, bulkAt := young.LocalAddr().String(), bulk.LocalAddr().String()
	young.Close()
	bulk.Close()
	if err := <-drained; err != nil {
		t.Fatalf("old daemon's drain: %v", err)
	}
	lines := accessOf(t, w, 2, b.addr())
	wantAccess(t, lines, youngAt, "eof", len("y1\ny2\n"), len("web:y1\nweb:y2\n"))
	wantAccess(t, lines, bulkAt, "eof", 2*(len(bulkLine)+1), 2*len("web:"+bulkLine+"\n"))
	if n := next.logs.Count(`"message":"connection closed"`); n != 1 {
		t.Errorf("the new daemon logged %d connections, want 1:\n%s", n, next.logs)
	}
}

// startSuccessor starts a second daemon on w's config that takes over w's
// listen sockets, as the new process of an upgrade does.
func startSuccessor(t *testing.T, w *relayWorld) *relayWorld {
	t.Helper()
	socks, err := w.d.listenSockets()
	tk := &Takeover{socks: make(sockets)}
	for _, s := range socks {
		tk.socks[sockKey{s.Proto, s.Addr}] = s.File
	}
	if err != nil {
		tk.socks.close()
		t.Fatal(err)
	}
	next := &relayWorld{t: t, dir: w.dir, logs: &world.LogBuffer{}}
	path := filepath.Join(w.dir, "relay.yaml")
	load := func() (*config.Config, error) {
		return config.Load(config.LoadOptions{Path: path, Environ: []string{}})
	}
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	log, levels := NewLogger(next.logs, "json", zerolog.DebugLevel)
	next.d = New(cfg, Options{Load: load, Log: log, Levels: levels, Takeover: tk})
	if err := next.d.Start(); err != nil {
		t.Fatalf("successor: %v", err)
	}
	t.Cleanup(func() { _ = next.d.Close() })
	return next
}

// TestFrontStopsWithLastTCPListener: a reload that removes the last plain
// tcp listener stops the front's loop once that listener has drained (the
// daemon's pipe pool lives on, and kept it for good before); a later
// reload that adds one starts it again, and it serves.
func TestFrontStopsWithLastTCPListener(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	web, rtb := newTCPEcho(t, "web"), newUDPEcho(t, "rtb")
	admin, webPort, rtbPort := adminOn(t), freePort(t, "tcp"), freePort(t, "udp")
	render := func(withWeb bool) string {
		y := admin + fmt.Sprintf("listeners:\n  - {name: rtb, mode: udp, listen: \"127.0.0.1:%d\", upstream: %q}\n", rtbPort, rtb.addr())
		if withWeb {
			y += fmt.Sprintf("  - {name: web, mode: tcp, listen: \"127.0.0.1:%d\", upstream: %q}\n", webPort, web.addr())
		}
		return y
	}
	w := startWorld(t, render(true), nil)
	at := fmt.Sprintf("127.0.0.1:%d", webPort)
	if got := tcpOutcome(t, "", at); got != "web:hello" {
		t.Fatalf("web: %q", got)
	}
	if n := frontLoops(); n != 1 {
		t.Fatalf("%d front loops with a tcp listener, want 1", n)
	}
	w.writeFile("relay.yaml", render(false))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	w.logs.Wait(t, `"listener":"web"`, "retired listener drained")
	if n := frontLoops(); n != 0 {
		t.Errorf("%d front loops once the last tcp listener drained, want 0", n)
	}
	w.writeFile("relay.yaml", render(true))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := tcpOutcome(t, "", at); got != "web:hello" {
		t.Fatalf("web added again: %q", got)
	}
	if n := frontLoops(); n != 1 {
		t.Errorf("%d front loops with a tcp listener again, want 1", n)
	}
	_ = w.d.Close()
}

// frontLoops counts the goroutines running a front's loop (forward).
func frontLoops() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "forward.(*front).run(")
}
