package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"
)

// TestPerSourceEndToEnd: with per_source.max_conns 1 from the config file,
// 127.0.0.2's second connection is closed before any dial while 127.0.0.3
// connects; the refusal is logged through the ACL's budget and counted as
// relay_connections_rejected_total{reason="per_source"}.
func TestPerSourceEndToEnd(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	backend := newTCPEcho(t, "web")
	port := freePort(t, "tcp")
	yaml := adminOn(t) + fmt.Sprintf(`
listeners:
  - name: web
    mode: tcp
    listen: "127.0.0.1:%d"
    upstream: "%s"
    per_source: {max_conns: 1, rate: 100/s}
`, port, backend.addr())
	w := startWorld(t, yaml, nil)
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	first, err := dialLine(t, "127.0.0.2", addr)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := first.roundTrip("hello"); err != nil || got != "web:hello" {
		t.Fatalf("first connection of 127.0.0.2: %q %v", got, err)
	}
	if got := tcpOutcome(t, "127.0.0.2", addr); got != "closed" {
		t.Fatalf("second connection of 127.0.0.2: %q, want closed", got)
	}
	if got := tcpOutcome(t, "127.0.0.3", addr); got != "web:hello" {
		t.Fatalf("127.0.0.3 while 127.0.0.2 is at its limit: %q", got)
	}
	if n := backend.accepted.Load(); n != 2 {
		t.Errorf("backend accepted %d connections, want 2 (none for the refused one)", n)
	}
	w.logs.Wait(t, `"message":"client refused"`, `"client":"127.0.0.2:`,
		`"reason":"per_source: too many connections from this source"`)

	want := []string{
		`relay_connections_rejected_total{listener="web",reason="per_source"} 1`,
		`relay_connections_accepted_total{listener="web"} 2`,
	}
	var body string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, body = scrape(t, "http://"+w.d.AdminAddr()+"/metrics")
		if missing(body, want) == "" || time.Now().After(deadline) {
			break
		}
	}
	if m := missing(body, want); m != "" {
		t.Fatalf("metrics lack %q:\n%s", m, grepRelay(body))
	}
	if strings.Contains(w.logs.String(), `"level":"error"`) {
		t.Errorf("error logged:\n%s", w.logs.String())
	}
	_ = w.d.Close()
}
