package daemon

import (
	"fmt"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"

	"github.com/edgerelay/relay/internal/world"
)

// TestReloadKeepsUpstreamDown: a reload that changes a listener while its
// primary upstream is down: the successor knows it is down, so the next
// client goes to the backup at once instead of dialling the dead primary
// again (which costs a black-holed primary's connect_timeout), and the
// outage is not logged a second time.
func TestReloadKeepsUpstreamDown(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	primary, backup := world.DeadAddr(t), newTCPEcho(t, "backup")
	port := freePort(t, "tcp")
	at := fmt.Sprintf("127.0.0.1:%d", port)
	admin := adminOn(t)
	render := func(idle string) string {
		return admin + fmt.Sprintf("listeners:\n  - {name: web, mode: tcp, listen: %q, "+
			"upstream: [%q, %q], idle_timeout: %s}\n", at, primary, backup.addr(), idle)
	}
	w := startWorld(t, render("1h"), nil)
	if got := tcpOutcome(t, "", at); got != "backup:hello" {
		t.Fatalf("before the reload: %q", got)
	}
	w.logs.Wait(t, `"message":"upstream down"`, primary)
	w.writeFile("relay.yaml", render("30m"))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := tcpOutcome(t, "", at); got != "backup:hello" {
		t.Fatalf("after the reload: %q", got)
	}
	w.logs.Wait(t, "retired listener drained")
	metricsSay(t, w, `relay_connections_accepted_total{listener="web"} 2`,
		fmt.Sprintf(`relay_upstream_up{listener="web",upstream=%q} 0`, primary))
	metricsSay(t, w, `relay_upstream_dial_failures_total{listener="web"} 1`)
	if n := w.logs.Count(`"message":"upstream down"`); n != 1 {
		t.Errorf("the outage was logged %d times, want once:\n%s", n, w.logs)
	}
	_ = w.d.Close()
}

// TestReloadLogsOutageOnce: while a listener a reload replaced drains (a
// live connection holds it), an upstream that goes down is checked and
// logged by the successor only, not once more by the retired listener's
// own active checks.
func TestReloadLogsOutageOnce(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	backend := newTCPEcho(t, "web")
	const interval = 200 * time.Millisecond
	w, at, render := webWorld(t, backend.addr(), fmt.Sprintf(", health: {interval: %s, timeout: 100ms}", interval), 5*time.Second)
	live := dialEcho(t, "", at, "web", "1")
	w.writeFile("relay.yaml", render(backend.addr(), fmt.Sprintf(", health: {interval: %s, timeout: 100ms}, idle_timeout: 30m", interval)))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	backend.ln.Close() // checks are refused from now on
	w.logs.Wait(t, `"message":"upstream down"`)
	// Asserting that nothing more happens takes time: three check intervals.
	time.Sleep(3 * interval)
	if n := w.logs.Count(`"message":"upstream down"`); n != 1 {
		t.Errorf("the outage was logged %d times, want once:\n%s", n, w.logs)
	}
	live.Close()
	_ = w.d.Close()
}
