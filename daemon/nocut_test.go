package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"

	"github.com/edgerelay/relay/internal/world"
)

const nocutYAML = `shutdown_grace: 50ms
%s
listeners:
  - {name: web, mode: tcp, listen: "127.0.0.1:%d", upstream: "%s"}
  - {name: rtb, mode: udp, listen: "127.0.0.1:%d", upstream: "%s"}
`

// TestReloadNeverCuts: a reload that changes every listener's upstream
// keeps the live TCP connection and UDP session on their old upstream long
// past shutdown_grace (which is for shutdown only), while new clients on the
// same ports reach the new upstreams; the reload metrics count it all.
func TestReloadNeverCuts(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	oldWeb, newWeb := newTCPEcho(t, "old"), newTCPEcho(t, "new")
	oldRTB, newRTB := newUDPEcho(t, "old-rtb"), newUDPEcho(t, "new-rtb")
	webPort, rtbPort := freePort(t, "tcp"), freePort(t, "udp")
	admin := adminOn(t)
	render := func(web, rtb string) string {
		return admin + fmt.Sprintf(nocutYAML, "", webPort, web, rtbPort, rtb)
	}
	w := startWorld(t, render(oldWeb.addr(), oldRTB.addr()), nil)
	web, rtb := fmt.Sprintf("127.0.0.1:%d", webPort), fmt.Sprintf("127.0.0.1:%d", rtbPort)
	live, err := dialLine(t, "", web)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := live.roundTrip("1"); err != nil || got != "old:1" {
		t.Fatalf("before: %q %v", got, err)
	}
	oldClient := udpClient(t, "127.0.0.1")
	if got, err := udpRoundTrip(oldClient, rtb, "a", 2*time.Second); err != nil || got != "old-rtb:a" {
		t.Fatalf("udp before: %q %v", got, err)
	}

	w.writeFile("relay.yaml", render(newWeb.addr(), newRTB.addr()))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	w.writeFile("relay.yaml", "listeners: [\n")
	if err := w.d.Reload(); err == nil {
		t.Fatal("a broken config reloaded")
	}
	metrics := "http://" + w.d.AdminAddr() + "/metrics"
	_, body := scrape(t, metrics)
	if m := missing(body, []string{
		`relay_reloads_total{result="success"} 1`,
		`relay_reloads_total{result="failure"} 1`,
		`relay_draining_connections{listener="web"} 1`,
		`relay_draining_connections{listener="rtb"} 1`,
	}); m != "" {
		t.Fatalf("metrics after the reloads: missing %s\n%s", m, grepRelay(body))
	}
	// Asserting that nothing happens takes time: ten grace periods.
	time.Sleep(10 * 50 * time.Millisecond)
	if got, err := live.roundTrip("2"); err != nil || got != "old:2" {
		t.Fatalf("live connection after the reload: %q %v (want it kept, on the old upstream)", got, err)
	}
	if got, err := udpRoundTrip(oldClient, rtb, "b", 2*time.Second); err != nil || got != "old-rtb:b" {
		t.Fatalf("live UDP session after the reload: %q %v (want its old upstream)", got, err)
	}
	if got := tcpOutcome(t, "", web); got != "new:hello" {
		t.Fatalf("new connection: %q", got)
	}
	newClient := udpClient(t, "127.0.0.1")
	if got, err := udpRoundTrip(newClient, rtb, "c", 2*time.Second); err != nil || got != "new-rtb:c" {
		t.Fatalf("new UDP client: %q %v", got, err)
	}
	live.Close()
	w.logs.Wait(t, `"listener":"web"`, "retired listener drained")
	_, body = scrape(t, metrics)
	if m := missing(body, []string{`relay_draining_connections{listener="web"} 0`}); m != "" {
		t.Fatalf("after the live connection ended: missing %s\n%s", m, grepRelay(body))
	}
	if strings.Contains(w.logs.String(), "hard_stop_after") {
		t.Errorf("something was cut:\n%s", w.logs)
	}
}

// TestReloadHardStopAfter: with reload.hard_stop_after, a retired
// listener's remaining connections are cut then, with one warning that
// names the listener and how many were cut.
func TestReloadHardStopAfter(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	oldWeb, newWeb := newTCPEcho(t, "old"), newTCPEcho(t, "new")
	rtbB := newUDPEcho(t, "rtb")
	webPort, rtbPort := freePort(t, "tcp"), freePort(t, "udp")
	admin := adminOn(t)
	render := func(web string) string {
		return admin + fmt.Sprintf(nocutYAML, "reload: {hard_stop_after: 200ms}", webPort, web, rtbPort, rtbB.addr())
	}
	w := startWorld(t, render(oldWeb.addr()), nil)
	web := fmt.Sprintf("127.0.0.1:%d", webPort)
	var live []*lineConn
	for i := range 2 {
		c, err := dialLine(t, "", web)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.roundTrip("x"); err != nil || got != "old:x" {
			t.Fatalf("conn %d before: %q %v", i, got, err)
		}
		live = append(live, c)
	}
	w.writeFile("relay.yaml", render(newWeb.addr()))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	if line := w.logs.Wait(t, "reload applied"); !world.ContainsAll(line,
		`"added":[]`, `"changed":["web"]`, `"removed":[]`, `"kept":1`) {
		t.Errorf("reload line does not name the changed listener: %s", line)
	}
	line := w.logs.Wait(t, "hard_stop_after reached")
	if !world.ContainsAll(line, `"listener":"web"`, `"cut":2`, `"level":"warn"`, `"hard_stop_after_ms":200`) {
		t.Errorf("warning %s does not name listener web, 2 cut and the 200 ms bound", line)
	}
	for i, c := range live {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.r.ReadString('\n'); !errors.Is(err, io.EOF) {
			t.Errorf("conn %d after hard_stop_after: %v, want EOF", i, err)
		}
	}
	w.logs.Wait(t, `"listener":"web"`, "retired listener drained")
	if n := w.logs.Count("hard_stop_after reached"); n != 1 {
		t.Errorf("%d hard-stop warnings, want 1", n)
	}
}

// TestHealthzDraining: while a shutdown drains, /healthz answers 503
// "draining".
func TestHealthzDraining(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	webB, rtbB := newTCPEcho(t, "web"), newUDPEcho(t, "rtb")
	webPort, rtbPort := freePort(t, "tcp"), freePort(t, "udp")
	w := startWorld(t, adminOn(t)+fmt.Sprintf(nocutYAML, "", webPort, webB.addr(), rtbPort, rtbB.addr()), nil)
	live, err := dialLine(t, "", fmt.Sprintf("127.0.0.1:%d", webPort))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := live.roundTrip("1"); err != nil || got != "web:1" {
		t.Fatalf("before: %q %v", got, err)
	}
	healthz := "http://" + w.d.AdminAddr() + "/healthz"
	if code, body := scrape(t, healthz); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("healthz before: %d %q", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.d.Shutdown(ctx) }()
	world.Eventually(t, "healthz to say draining", func() bool {
		code, body := scrape(t, healthz)
		return code == http.StatusServiceUnavailable && body == "draining\n"
	})
	if got, err := live.roundTrip("2"); err != nil || got != "web:2" {
		t.Fatalf("live connection while draining: %q %v", got, err)
	}
	live.Close()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}
