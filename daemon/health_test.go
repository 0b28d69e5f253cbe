package daemon

import (
	"fmt"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
	"github.com/pion/transport/v3/test"
)

// TestUpstreamHealthMetrics: with active checks on, a dead primary is
// known down before any client comes (relay_upstream_up 0), a client goes
// to the backup, and the failover is counted against the primary. The dead
// primary refuses at once; the check timeout is long enough that a loaded
// machine never times out the live backup (with 50ms it did, and the
// client met every upstream down). A check must end before the next.
func TestUpstreamHealthMetrics(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	web := newTCPEcho(t, "web")
	dead := world.DeadAddr(t)
	port := freePort(t, "tcp")
	yaml := adminOn(t) + fmt.Sprintf(`
listeners:
  - name: web
    mode: tcp
    listen: "127.0.0.1:%d"
    upstream: ["%s", "%s"]
    health: {interval: 500ms, timeout: 500ms}
`, port, dead, web.addr())
	w := startWorld(t, yaml, nil)
	base := "http://" + w.d.AdminAddr()
	down := fmt.Sprintf(`relay_upstream_up{listener="web",upstream="%s"} 0`, dead)
	var body string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, body = scrape(t, base+"/metrics")
		if missing(body, []string{down}) == "" || time.Now().After(deadline) {
			break
		}
	}
	c, err := dialLine(t, "127.0.0.1", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.roundTrip("hello"); err != nil || got != "web:hello" {
		t.Fatalf("web: %q %v", got, err)
	}
	c.Close()
	_, body = scrape(t, base+"/metrics")
	want := []string{
		down,
		fmt.Sprintf(`relay_upstream_up{listener="web",upstream="%s"} 1`, web.addr()),
		fmt.Sprintf(`relay_upstream_failovers_total{listener="web",upstream="%s"} 1`, dead),
		`relay_upstream_dial_failures_total{listener="web"} 0`,
	}
	if m := missing(body, want); m != "" {
		t.Fatalf("metrics lack %q:\n%s", m, grepRelay(body))
	}
	_ = w.d.Close()
}
