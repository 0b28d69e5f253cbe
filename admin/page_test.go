package admin

import (
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/headless"
)

// pageStatus is a relay in every state the page must make plain: a listener
// down, an unhealthy upstream, a printer in use, UDP drops, TLS failures
// (a box office's expired client certificate),
// a listener out of descriptors, recent ACL rejections.
func pageStatus(now time.Time) (func() []Snapshot, func() Relay) {
	shaken := now.Add(-5 * time.Second)
	snaps := []Snapshot{
		{
			Listener: "cms-http", Mode: "tcp", State: StateServing, Listen: "0.0.0.0:80",
			Upstreams:       []Upstream{{Address: "192.0.2.10:80", Health: "healthy"}},
			BytesToUpstream: 123456, BytesToClient: 9876543,
			Conns: &Conns{Accepted: 42, RejectedACL: 3, Active: 2, DialFailures: 1, Unreachable: 5},
			TLS: &TLS{Client: &Handshakes{OK: 40, Resumed: 2, Failed: map[string]uint64{"expired": 1}, LastOK: &shaken,
				Failing: []HandshakeFailure{{Reason: "expired", Peer: "192.0.2.77", At: now.Add(-2 * time.Minute)}}}},
		},
		{
			Listener: "ticket-printer", Mode: "raw", State: StateServing, Listen: "0.0.0.0:10001",
			Upstreams: []Upstream{{Address: "192.0.2.20:9100", Health: "unhealthy"}},
			Conns:     &Conns{Accepted: 7, Active: 2},
			Raw: &Raw{QueueLength: 1, Waits: 4, WaitTime: 6 * time.Second,
				Printing: []Holder{{Client: "192.0.2.99:51000", Since: now.Add(-95 * time.Second)}}},
		},
		{
			Listener: "rtb", Mode: "udp", State: StateDown, Listen: "0.0.0.0:8100-8226",
			Upstreams: []Upstream{{Address: "192.0.2.30:8100"}},
			UDP: &UDP{SessionsActive: 5, SessionsCreated: 50, DatagramsToUpstream: 1000, DatagramsToClient: 900,
				Dropped: map[string]uint64{"session_limit": 12, "acl": 0}},
		},
		{
			Listener: "cms-ftp", Mode: "ftp", State: StateServing, Listen: "0.0.0.0:21",
			Upstreams: []Upstream{{Address: "192.0.2.10:21"}},
			Conns:     &Conns{Accepted: 9, AcceptErrors: 12, AcceptBackingOff: 1},
			FTP:       &FTP{Sessions: 9, DataOpened: 30, DataPortsInUse: 2, DataPorts: 10000, BouncesRefused: 1},
		},
	}
	relay := Relay{
		Version: "relay v1.2.3", Started: now.Add(-3 * time.Hour), Config: "/etc/relay/relay.yaml",
		Loaded: now.Add(-time.Hour), AdminListen: "127.0.0.1:9090",
		LastReload: &Reload{At: now.Add(-time.Hour), OK: false, Error: "relay.yaml:7: listen: bad port"},
		ACL: &ACL{File: "/etc/relay/relay_hba.conf", Rules: 4,
			Decisions: []ACLDecisions{{Listener: "cms-http", Proto: "tcp", Allowed: 42, Rejected: 3, Logged: 3}},
			Recent: []Rejection{{Time: now.Add(-time.Minute), Listener: "cms-http", Proto: "tcp",
				Client: "198.51.100.7:40000", Rule: "relay_hba.conf:4 host all all reject"}}},
	}
	return func() []Snapshot { return snaps }, func() Relay { return relay }
}

// TestPageInBrowser loads the page in headless chromium and reads what its
// script drew: every listener, the figures, a down listener and an
// unhealthy upstream marked as such, the printer's client, the rejections.
// It leaves a phone-sized screenshot in headless.ArtefactDir().
func TestPageInBrowser(t *testing.T) {
	browser := headless.New(t)
	gather, relay := pageStatus(time.Now())
	_, url, stop := running(t, Config{Gather: gather, Relay: relay})
	defer stop()

	raw, dom := loadPage(t, browser, url+"/", 5*time.Second)
	defer func() {
		if t.Failed() {
			t.Logf("DOM:\n%s", raw)
		}
	}()
	if n := dom.Find("id", "refreshes"); len(n) != 1 || n[0].Attr("data-refreshes") < "2" {
		t.Errorf("the page did not refresh itself: %v", n)
	}
	card := func(name string) headless.Node { return listenerCard(t, dom, name) }
	field := func(c headless.Node, f string) string {
		t.Helper()
		n := c.Find("data-field", f)
		if len(n) == 0 {
			t.Fatalf("no %s in card %s", f, c.Attr("data-listener"))
		}
		return n[0].Text()
	}
	web := card("cms-http")
	for f, want := range map[string]string{"accepted": "42", "active": "2", "rejected_acl": "3", "dial_failures": "1", "unreachable": "5", "bytes_to_client": "9.4 MiB"} {
		if got := field(web, f); got != want {
			t.Errorf("cms-http %s = %q, want %q", f, got, want)
		}
	}
	if rtb := card("rtb"); rtb.Attr("data-state") != "down" || !strings.Contains(rtb.Text(), "DOWN") || !strings.Contains(rtb.Attr("class"), "down") {
		t.Errorf("listener rtb is down but its card says %q (class %q)", rtb.Text(), rtb.Attr("class"))
	}
	// No health section: an upstream up is one no dial has failed on, not
	// one known healthy.
	if up := web.Find("data-health", "healthy"); len(up) != 1 || up[0].Text() != "192.0.2.10:80 no failures" {
		t.Errorf("cms-http's unprobed upstream reads %v, want \"no failures\"", up)
	}
	printer := card("ticket-printer")
	if up := printer.Find("data-health", "unhealthy"); len(up) != 1 || !strings.Contains(up[0].Text(), "UNHEALTHY") {
		t.Errorf("unhealthy upstream not shown as such: %q", printer.Text())
	}
	if got := field(printer, "printing.client printing.since"); !regexp.MustCompile(`^192\.0\.2\.99:51000 for [1-4]m \d+s$`).MatchString(got) {
		t.Errorf("printing = %q, want the client and 95 s or more since its turn came", got)
	}
	if got := field(card("cms-ftp"), "data_ports_in_use data_ports"); got != "2 of 10,000" {
		t.Errorf("ftp data ports = %q", got)
	}
	// Out of descriptors: the listener serves but accepts nobody.
	if ftp := card("cms-ftp"); field(ftp, "accept_backing_off") != "NOT ACCEPTING" || field(ftp, "accept_errors") != "12" ||
		!strings.Contains(ftp.Attr("class"), "down") {
		t.Errorf("cms-ftp is backing off after 12 failed accepts but its card says %q (class %q)", ftp.Text(), ftp.Attr("class"))
	}
	if n := web.Find("data-field", "accept_backing_off"); len(n) != 0 {
		t.Errorf("cms-http accepts but its card says %q", n[0].Text())
	}
	troubled := dom.Find("aria-label", "listeners that need attention")
	if want := "cms-http CLIENT CERTS REFUSED: expired (192.0.2.77) ticket-printer NO UPSTREAM UP rtb DOWN cms-ftp NOT ACCEPTING"; len(troubled) != 1 || troubled[0].Text() != want {
		t.Errorf("listeners needing attention %v, want %q", troubled, want)
	}
	if r := dom.Find("data-client", "198.51.100.7:40000"); len(r) != 1 || !strings.Contains(r[0].Text(), "relay_hba.conf:4") {
		t.Errorf("recent rejection missing or without its rule: %v", r)
	}

	shot := filepath.Join(headless.ArtefactDir(), "status-page-phone.png")
	if err := browser.Screenshot(url+"/", shot, 412, 1800, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
}

// loadPage loads url in browser for budget of virtual time and returns the
// DOM its script left, as text (for failure messages) and parsed.
func loadPage(t *testing.T, browser *headless.Browser, url string, budget time.Duration) (string, headless.Node) {
	t.Helper()
	raw, err := browser.DumpDOM(url, budget)
	if err != nil {
		t.Fatal(err)
	}
	dom, err := headless.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return raw, dom
}

// listenerCard returns the one card of listener name in dom.
func listenerCard(t *testing.T, dom headless.Node, name string) headless.Node {
	t.Helper()
	c := dom.Find("data-listener", name)
	if len(c) != 1 {
		t.Fatalf("%d cards for listener %s", len(c), name)
	}
	return c[0]
}

// TestPageShowsEveryField: every json name of /status.json appears in the
// page's script, so a field added to the JSON and not to the page fails.
func TestPageShowsEveryField(t *testing.T) {
	js, err := page.ReadFile("page/status.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range jsonNames(reflect.TypeFor[Status]()) {
		if !strings.Contains(string(js), name) {
			t.Errorf("status.json field %q is not on the page (admin/page/status.js)", name)
		}
	}
}

// jsonNames lists the json names of t's fields and of the structs inside.
func jsonNames(t reflect.Type) []string {
	var out []string
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] || t == reflect.TypeFor[time.Time]() {
			return
		}
		seen[t] = true
		for i := range t.NumField() {
			f := t.Field(i)
			if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
				out = append(out, name)
			}
			walk(f.Type)
		}
	}
	walk(t)
	return out
}

// TestStatusJSONNames pins the documented field names of /status.json:
// testdata/status.json is the page's fixture as JSON; a renamed or removed
// field fails here (run with -update after adding one on purpose).
func TestStatusJSONNames(t *testing.T) {
	now := time.Date(2026, 11, 28, 18, 0, 0, 0, time.UTC)
	gather, relay := pageStatus(now)
	sr := &statusReader{gather: gather, relay: relay, now: func() time.Time { return now }}
	st := sr.read()
	st.Process = Process{UptimeSeconds: 10800, ConnectionsActive: 9, ConnectionsTotal: 108, FDsOpen: 20, FDsLimit: 1024}
	got, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, filepath.Join("testdata", "status.json"), append(got, '\n'))
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with the file at path, or rewrites it with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from what the code writes now; if the change is meant, run with -update and say so in the README.\ngot:\n%s", path, got)
	}
}

// TestPageLongUpstreamList: a udp listener over CAYIN's 127 RTB ports has
// one upstream per port. Its card sums them up (count, span, health) and
// lists only the unhealthy ones, the full list folded away, instead of 127
// rows that push every other listener off the screen. A listener whose
// every upstream is down says so in its header. The ACL's counts show
// while no rejection is recent.
func TestPageLongUpstreamList(t *testing.T) {
	browser := headless.New(t)
	rtb := Snapshot{Listener: "rtb", Mode: "udp", State: StateServing, Listen: "0.0.0.0:8100-8226", UDP: &UDP{}, HealthChecks: true}
	for p := 8100; p <= 8226; p++ {
		u := Upstream{Address: "192.0.2.30:" + strconv.Itoa(p), Health: HealthUp}
		if p == 8110 || p == 8200 {
			u.Health, u.Failovers = HealthDown, 4
		}
		rtb.Upstreams = append(rtb.Upstreams, u)
	}
	web := Snapshot{Listener: "cms-http", Mode: "tcp", State: StateServing, Listen: "0.0.0.0:80", Conns: &Conns{},
		Upstreams: []Upstream{{Address: "192.0.2.10:80", Health: HealthDown}, {Address: "192.0.2.11:80", Health: HealthDown}}}
	ftp := Snapshot{Listener: "cms-ftp", Mode: "ftp", State: StateServing, Listen: "0.0.0.0:21", Conns: &Conns{}, FTP: &FTP{},
		Upstreams: []Upstream{{Address: "192.0.2.10:21", Health: HealthUp}, {Address: "192.0.2.11:21", Health: HealthDown}}}
	relay := Relay{ACL: &ACL{File: "relay_hba.conf", Rules: 2,
		Decisions: []ACLDecisions{{Listener: "rtb", Proto: "udp", Allowed: 5}}}}
	_, url, stop := running(t, Config{
		Gather: func() []Snapshot { return []Snapshot{rtb, web, ftp} },
		Relay:  func() Relay { return relay },
	})
	defer stop()

	raw, dom := loadPage(t, browser, url+"/", 3*time.Second)
	defer func() {
		if t.Failed() {
			t.Logf("DOM:\n%s", raw)
		}
	}()
	cards := func(name string) headless.Node { return listenerCard(t, dom, name) }
	card := cards("rtb")
	sum := card.Find("data-field", "upstreams")
	if len(sum) != 1 || !strings.Contains(sum[0].Text(), "127 upstreams 192.0.2.30:8100–8226") ||
		!strings.Contains(sum[0].Text(), "125 healthy") || !strings.Contains(sum[0].Text(), "2 UNHEALTHY") {
		t.Errorf("rtb upstream summary %v, want the count, the span and the health counts", sum)
	}
	shown := card.Find("data-upstreams", "shown")
	if len(shown) != 1 {
		t.Fatalf("rtb: %d lists of upstreams shown, want 1", len(shown))
	}
	var listed []string
	for _, li := range shown[0].Find("data-health", "unhealthy") {
		listed = append(listed, li.Attr("data-upstream"))
	}
	if len(shown[0].Find("data-health", "healthy")) != 0 || !reflect.DeepEqual(listed, []string{"192.0.2.30:8110", "192.0.2.30:8200"}) {
		t.Errorf("rtb lists %q (and %d healthy), want the two unhealthy upstreams alone",
			listed, len(shown[0].Find("data-health", "healthy")))
	}
	if all := card.Find("data-upstreams", "all"); len(all) != 1 || len(all[0].Find("data-health", "healthy")) != 125 || all[0].Attr("open") != "" {
		t.Errorf("rtb: want every upstream in one closed details element")
	}
	if len(card.Find("data-field", "no_upstream_up")) != 0 {
		t.Error("rtb has healthy upstreams but says none is up")
	}
	if n := cards("cms-http").Find("data-field", "no_upstream_up"); len(n) != 1 || n[0].Text() != "NO UPSTREAM UP" {
		t.Error("cms-http: every upstream is down and the header does not say so")
	}
	if len(cards("cms-ftp").Find("data-field", "no_upstream_up")) != 0 {
		t.Error("cms-ftp has one upstream up but says none is")
	}
	// The overview above the cards links every listener in trouble.
	if o := dom.Find("data-field", "overview"); len(o) != 1 || !strings.HasPrefix(o[0].Text(), "3 listeners: 3 serving. 3 need attention") {
		t.Errorf("overview %v, want the count by state and 3 in trouble", o)
	}
	for name, why := range map[string]string{"rtb": "2 upstreams UNHEALTHY", "cms-http": "NO UPSTREAM UP", "cms-ftp": "1 upstream UNHEALTHY"} {
		li := dom.Find("data-trouble", name)
		if len(li) != 1 || li[0].Text() != name+" "+why {
			t.Errorf("overview for %s: %v, want %q", name, li, name+" "+why)
			continue
		}
		if a := li[0].Find("href", "#listener-"+name); len(a) != 1 || cards(name).Attr("id") != "listener-"+name {
			t.Errorf("overview for %s does not link its card", name)
		}
	}
	if d := dom.Find("data-field", "decisions"); len(d) != 1 || !strings.Contains(d[0].Text(), "rtb (udp): 5 allowed") {
		t.Errorf("ACL counts not shown while no rejection is recent: %v", d)
	}

	shot := filepath.Join(headless.ArtefactDir(), "status-page-rtb-127-ports.png")
	if err := browser.Screenshot(url+"/", shot, 1280, 900, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
}

// TestPageWarnsNearDescriptorLimit: the process figure turns into a warning
// past 90 % of the descriptor limit, where accepts and dials start to fail.
// The page reads a fixed status.json here: the real one counts this process.
func TestPageWarnsNearDescriptorLimit(t *testing.T) {
	browser := headless.New(t)
	gather, relay := pageStatus(time.Now())
	sr := &statusReader{gather: gather, relay: relay, now: time.Now}
	st := sr.read()
	st.Process.FDsOpen, st.Process.FDsLimit = 19_500, 20_000
	body, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", servePage("index.html", "text/html; charset=utf-8"))
	mux.HandleFunc("GET /status.css", servePage("status.css", "text/css; charset=utf-8"))
	mux.HandleFunc("GET /status.js", servePage("status.js", "text/javascript; charset=utf-8"))
	mux.HandleFunc("GET /patch.js", servePage("patch.js", "text/javascript; charset=utf-8"))
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	_, dom := loadPage(t, browser, srv.URL+"/", 3*time.Second)
	fds := dom.Find("data-field", "fds_open fds_limit")
	if len(fds) != 1 || fds[0].Text() != "19,500 of 20,000: near the limit" || len(fds[0].Find("class", "badge warn")) != 1 {
		t.Errorf("descriptors %v, want a warning at 19,500 of 20,000", fds)
	}
}
