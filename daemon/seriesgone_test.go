package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"

	"github.com/edgerelay/relay/internal/world"
)

// TestRemovedListenerSeriesGo: once a listener a reload removed has
// drained, /metrics has no series with its name (ACL decisions, tcp and
// udp counters, upstreams, draining), while a listener the same reload
// replaced under its name keeps counting from where it was, ACL decisions
// included.
func TestRemovedListenerSeriesGo(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	a, b, box, rtb := newTCPEcho(t, "a"), newTCPEcho(t, "b"), newTCPEcho(t, "box"), newUDPEcho(t, "rtb")
	admin, webPort, boxPort, rtbPort := adminOn(t), freePort(t, "tcp"), freePort(t, "tcp"), freePort(t, "udp")
	render := func(webUp string, withRemoved bool) string {
		y := admin + fmt.Sprintf("acl: {file: relay_hba.conf}\nlisteners:\n"+
			"  - {name: web, mode: tcp, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n", webPort, webUp)
		if withRemoved {
			y += fmt.Sprintf("  - {name: box, mode: tcp, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n", boxPort, box.addr())
			y += fmt.Sprintf("  - {name: rtb, mode: udp, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n", rtbPort, rtb.addr())
		}
		return y
	}
	const hba = "host all 127.0.0.1/32 allow\nhost all all reject\n"
	w := startWorld(t, render(a.addr(), true), map[string]string{"relay_hba.conf": hba})
	webAt, boxAt := fmt.Sprintf("127.0.0.1:%d", webPort), fmt.Sprintf("127.0.0.1:%d", boxPort)
	for _, c := range []struct{ src, at, want string }{
		{"127.0.0.1", webAt, "a:hello"}, {"127.0.0.2", webAt, "closed"},
		{"127.0.0.1", boxAt, "box:hello"}, {"127.0.0.2", boxAt, "closed"},
	} {
		if got := tcpOutcome(t, c.src, c.at); got != c.want {
			t.Fatalf("%s to %s: %q, want %q", c.src, c.at, got, c.want)
		}
	}
	if got, err := udpRoundTrip(udpClient(t, "127.0.0.1"), fmt.Sprintf("127.0.0.1:%d", rtbPort), "x", 2*time.Second); err != nil || got != "rtb:x" {
		t.Fatalf("udp: %q, %v", got, err)
	}
	metricsSay(t, w, `relay_acl_decisions_total{decision="allow",listener="box",proto="tcp"} 1`,
		`relay_acl_decisions_total{decision="allow",listener="rtb",proto="udp"} 1`,
		`relay_udp_sessions_active{listener="rtb"} 1`)

	// web is replaced under its name; box and rtb are removed. rtb's
	// session drains until its timeout, cut short by hard_stop_after.
	w.writeFile("relay.yaml", "reload: {hard_stop_after: 100ms}\n"+render(b.addr(), false))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ src, want string }{{"127.0.0.1", "b:hello"}, {"127.0.0.2", "closed"}} {
		if got := tcpOutcome(t, c.src, webAt); got != c.want {
			t.Fatalf("%s to web after the reload: %q, want %q", c.src, got, c.want)
		}
	}
	for _, name := range []string{"web", "box", "rtb"} {
		w.logs.Wait(t, `"listener":"`+name+`"`, "retired listener drained")
	}
	metricsSay(t, w, `relay_acl_decisions_total{decision="allow",listener="web",proto="tcp"} 2`,
		`relay_acl_decisions_total{decision="reject",listener="web",proto="tcp"} 2`,
		`relay_connections_accepted_total{listener="web"} 2`,
		`relay_connections_rejected_total{listener="web",reason="acl"} 2`)
	_, body := scrape(t, "http://"+w.d.AdminAddr()+"/metrics")
	for _, line := range strings.Split(body, "\n") {
		if strings.Contains(line, `listener="box"`) || strings.Contains(line, `listener="rtb"`) {
			t.Errorf("a removed listener's series is still there: %s", line)
		}
	}
	_ = w.d.Close()
}

// TestRemovedUpstreamSeriesGo: a listener replaced under its name with an
// upstream left out of its list keeps counting failovers of the upstreams
// it still has, and once the old instance has drained, the upstream it
// left out has no series any more (its failover count was carried over
// to the name for good).
func TestRemovedUpstreamSeriesGo(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	dead, live := world.DeadAddr(t), newTCPEcho(t, "live")
	admin, port := adminOn(t), freePort(t, "tcp")
	at := fmt.Sprintf("127.0.0.1:%d", port)
	render := func(ups string) string {
		return admin + fmt.Sprintf("listeners:\n  - {name: web, mode: tcp, listen: %q, upstream: [%s]}\n", at, ups)
	}
	w := startWorld(t, render(fmt.Sprintf("%q, %q", dead, live.addr())), nil)
	if got := tcpOutcome(t, "", at); got != "live:hello" {
		t.Fatalf("before the reload: %q", got)
	}
	deadSeries := fmt.Sprintf(`relay_upstream_failovers_total{listener="web",upstream=%q} 1`, dead)
	metricsSay(t, w, deadSeries)

	w.writeFile("relay.yaml", render(fmt.Sprintf("%q", live.addr())))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := tcpOutcome(t, "", at); got != "live:hello" {
		t.Fatalf("after the reload: %q", got)
	}
	w.logs.Wait(t, `"listener":"web"`, "retired listener drained")
	metricsSay(t, w, `relay_connections_accepted_total{listener="web"} 2`,
		fmt.Sprintf(`relay_upstream_failovers_total{listener="web",upstream=%q} 0`, live.addr()))
	_, body := scrape(t, "http://"+w.d.AdminAddr()+"/metrics")
	for _, line := range strings.Split(body, "\n") {
		if strings.Contains(line, dead) {
			t.Errorf("an upstream the listener no longer has still has a series: %s", line)
		}
	}
	_ = w.d.Close()
}
