package daemon

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// dashboardSeries returns every relay_* series name the Grafana dashboard
// queries, from its panels' expressions and its template variables.
func dashboardSeries(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct{ Definition string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	var names []string
	for _, e := range exprs {
		for _, n := range regexp.MustCompile(`relay_[a-z0-9_]+`).FindAllString(e, -1) {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	return names
}

// TestGrafanaDashboardSeriesExist runs a relay with a listener of every
// mode, sends traffic through them, and requires every series the
// dashboard (deploy/grafana/relay.json) queries to be on /metrics: a
// renamed series, or a panel written for one that does not exist, fails.
func TestGrafanaDashboardSeriesExist(t *testing.T) {
	names := dashboardSeries(t, "../deploy/grafana/relay.json")
	if len(names) < 20 {
		t.Fatalf("only %d series found in the dashboard: %v", len(names), names)
	}

	web, rtb, device := newTCPEcho(t, "web"), newUDPEcho(t, "rtb"), newTCPEcho(t, "device")
	ports := []int{freePort(t, "tcp"), freePort(t, "udp"), freePort(t, "tcp"), freePort(t, "tcp")}
	data := freePort(t, "tcp")
	yaml := adminOn(t) + fmt.Sprintf(`
acl: {file: hba.conf}
listeners:
  - {name: web, mode: tcp, listen: "127.0.0.1:%d", upstream: "%s"}
  - {name: rtb, mode: udp, listen: "127.0.0.1:%d", upstream: "%s"}
  - {name: printer, mode: raw, listen: "127.0.0.1:%d", upstream: "%s", raw: {exclusive: true}}
  - {name: ftp, mode: ftp, listen: "127.0.0.1:%d", upstream: "%s", ftp: {data_ports: "%d-%d"}}
`, ports[0], web.addr(), ports[1], rtb.addr(), ports[2], device.addr(), ports[3], fakeFTP(t), data, data)
	w := startWorld(t, yaml, map[string]string{"hba.conf": "host all all allow\n"})

	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[2])} {
		c, err := dialLine(t, "127.0.0.1", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.roundTrip("hello"); err != nil || !strings.HasSuffix(got, ":hello") {
			t.Fatalf("%s: %q %v", addr, got, err)
		}
		c.Close()
	}
	u := udpClient(t, "127.0.0.1")
	if got, err := udpRoundTrip(u, fmt.Sprintf("127.0.0.1:%d", ports[1]), "ping", 5*time.Second); err != nil || got != "rtb:ping" {
		t.Fatalf("rtb: %q %v", got, err)
	}
	ftp, err := dialLine(t, "127.0.0.1", fmt.Sprintf("127.0.0.1:%d", ports[3]))
	if err != nil {
		t.Fatal(err)
	}
	if greeting, err := ftp.r.ReadString('\n'); err != nil || !strings.HasPrefix(greeting, "220") {
		t.Fatalf("ftp greeting %q %v", greeting, err)
	}
	ftp.Close()

	code, body := scrape(t, "http://"+w.d.AdminAddr()+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, name := range names {
		if !strings.Contains(body, "\n"+name+"{") && !strings.Contains(body, "\n"+name+" ") {
			t.Errorf("the dashboard queries %s, which /metrics does not have", name)
		}
	}
}
