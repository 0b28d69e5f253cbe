package daemon

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"
)

func scrape(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsCountKnownTraffic drives known traffic through a TCP and a UDP
// listener of a started daemon and reads exact counts from /metrics.
func TestMetricsCountKnownTraffic(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	web, rtb := newTCPEcho(t, "web"), newUDPEcho(t, "rtb")
	webPort, rtbPort := freePort(t, "tcp"), freePort(t, "udp")
	yaml := adminOn(t) + fmt.Sprintf(`
acl: {file: hba.conf}
listeners:
  - {name: web, mode: tcp, listen: "127.0.0.1:%d", upstream: "%s"}
  - {name: rtb, mode: udp, listen: "127.0.0.1:%d", upstream: "%s"}
`, webPort, web.addr(), rtbPort, rtb.addr())
	w := startWorld(t, yaml, map[string]string{"hba.conf": "host all 127.0.0.2 255.255.255.255 reject\nhost all all allow\n"})
	base := "http://" + w.d.AdminAddr()
	if code, body := scrape(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d %q", code, body)
	}

	// Three TCP connections each send "hello\n" (6 bytes) and get "web:hello\n" (10).
	for range 3 {
		c, err := dialLine(t, "127.0.0.1", fmt.Sprintf("127.0.0.1:%d", webPort))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.roundTrip("hello"); err != nil || got != "web:hello" {
			t.Fatalf("web: %q %v", got, err)
		}
		c.Close()
	}
	if got := tcpOutcome(t, "127.0.0.2", fmt.Sprintf("127.0.0.1:%d", webPort)); got != "closed" {
		t.Fatalf("rejected client: %q", got)
	}
	// Two datagrams of 4 bytes each way from one client: one session.
	u := udpClient(t, "127.0.0.1")
	for range 2 {
		if got, err := udpRoundTrip(u, fmt.Sprintf("127.0.0.1:%d", rtbPort), "ping", 2*time.Second); err != nil || got != "rtb:ping" {
			t.Fatalf("rtb: %q %v", got, err)
		}
	}

	want := []string{
		`relay_connections_accepted_total{listener="web"} 3`,
		`relay_connections_rejected_total{listener="web",reason="acl"} 1`,
		`relay_bytes_total{direction="to_upstream",listener="web"} 18`,
		`relay_bytes_total{direction="to_client",listener="web"} 30`,
		`relay_udp_sessions_created_total{listener="rtb"} 1`,
		`relay_udp_datagrams_total{direction="to_upstream",listener="rtb"} 2`,
		`relay_udp_datagrams_total{direction="to_client",listener="rtb"} 2`,
		`relay_bytes_total{direction="to_client",listener="rtb"} 16`,
	}
	// The access counters of a TCP connection are final once its pair ends,
	// which is just after the client closed: poll the scrape, bounded.
	var body string
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body = scrape(t, base+"/metrics")
		if missing(body, want) == "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m := missing(body, want); m != "" {
		t.Fatalf("metrics lack %q:\n%s", m, grepRelay(body))
	}
	_ = w.d.Close()
}

func missing(body string, want []string) string {
	for _, w := range want {
		if !strings.Contains(body, w+"\n") {
			return w
		}
	}
	return ""
}

func grepRelay(body string) string {
	var b strings.Builder
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "relay_") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// TestMetricsSurviveReload: a reload that replaces a listener carries its
// counts over, so relay_connections_accepted_total never goes down.
func TestMetricsSurviveReload(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	a, b := newTCPEcho(t, "a"), newTCPEcho(t, "b")
	port := freePort(t, "tcp")
	admin := adminOn(t)
	render := func(up string) string {
		return admin + fmt.Sprintf("listeners:\n"+
			"  - {name: web, mode: tcp, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n", port, up)
	}
	w := startWorld(t, render(a.addr()), nil)
	at := fmt.Sprintf("127.0.0.1:%d", port)
	for range 3 {
		if got := tcpOutcome(t, "", at); got != "a:hello" {
			t.Fatalf("before reload: %q", got)
		}
	}
	w.writeFile("relay.yaml", render(b.addr()))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := tcpOutcome(t, "", at); got != "b:hello" {
		t.Fatalf("after reload: %q", got)
	}
	// Only once the replaced listener is gone does the sum depend on the carry.
	w.logs.Wait(t, "retired listener drained")
	base := "http://" + w.d.AdminAddr()
	want := []string{`relay_connections_accepted_total{listener="web"} 4`, `relay_connections_active{listener="web"} 0`}
	var body string
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, body = scrape(t, base+"/metrics")
		if missing(body, want) == "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m := missing(body, want); m != "" {
		t.Fatalf("after the old listener drained, metrics lack %q:\n%s", m, grepRelay(body))
	}
	_ = w.d.Close()
}
