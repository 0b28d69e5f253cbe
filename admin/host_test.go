package admin

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"
	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/internal/headless"
)

// paths is every route of the endpoint and one it does not have.
var paths = []string{"/", "/status.json", "/status.css", "/status.js", "/patch.js", "/metrics", "/healthz", "/nothing"}

// getHost makes one request to url with the given Host header.
func getHost(t *testing.T, url, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s (Host %s): %v", url, host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s (Host %s): read body: %v", url, host, err)
	}
	return resp.StatusCode, string(body)
}

// TestRebindingRefusedOnEveryPath: a page that re-pointed its own name at
// the relay's address sends that name as Host; every path answers 421 with
// the setting to change and none of the status, while the same requests by
// address are served. One warning names the Host and the client, and the
// refusals are counted on /metrics.
func TestRebindingRefusedOnEveryPath(t *testing.T) {
	defer test.CheckRoutines(t)()
	var logs bytes.Buffer
	gather, relay := pageStatus(time.Now())
	s, url, stop := running(t, Config{Gather: gather, Relay: relay, Log: zerolog.New(&logs),
		Hostname: func() (string, error) { return "edge-01.venue.lan", nil }})
	defer stop()
	hostPort := s.Addr().String()
	_, port, _ := strings.Cut(hostPort, ":")

	refused := 0
	for _, p := range paths {
		for _, host := range []string{"evil.example", "evil.example:" + port, "EVIL.Example.", "edge-01.evil.example", "localhost.evil.example", "127.0.0.1.evil.example"} {
			code, body := getHost(t, url+p, host)
			refused++
			if code != http.StatusMisdirectedRequest {
				t.Errorf("GET %s Host %s: %d, want 421", p, host, code)
			}
			if !strings.Contains(body, "admin.hosts") || strings.Contains(body, "cms-http") || strings.Contains(body, "edge-01.venue") {
				t.Errorf("GET %s Host %s: body %q: want the setting named, no status and no machine name", p, host, body)
			}
		}
		want := http.StatusOK
		if p == "/nothing" {
			want = http.StatusNotFound
		}
		if code, _ := getHost(t, url+p, hostPort); code != want {
			t.Errorf("GET %s by address: %d, want %d", p, code, want)
		}
	}

	_, metrics := get(t, url+"/metrics")
	if want := "\nrelay_admin_misdirected_requests_total " + strconv.Itoa(refused) + "\n"; !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d refusals logged in %d lines, want 1 (rate-limited):\n%s", refused, len(lines), logs.String())
	}
	var line struct{ Level, Host, Client, Message string }
	if err := json.Unmarshal([]byte(lines[0]), &line); err != nil {
		t.Fatal(err)
	}
	if line.Level != "warn" || line.Host != "evil.example" || !strings.HasPrefix(line.Client, "127.0.0.1:") || !strings.Contains(line.Message, "admin.hosts") {
		t.Errorf("warning %s: want level warn, host evil.example, the client's address and the setting", lines[0])
	}
}

// TestKnownHosts: the names the endpoint answers to, and near misses.
func TestKnownHosts(t *testing.T) {
	var listed atomic.Pointer[[]string]
	listed.Store(&[]string{"status.venue.example", "Grafana-Scrape.Venue.Example."})
	c := newHostCheck(Config{
		Hosts:    func() []string { return *listed.Load() },
		Hostname: func() (string, error) { return "Edge-01.venue.lan", nil },
	}, zerolog.Logger{})
	tests := []struct {
		host string
		want bool
	}{
		{"127.0.0.1:9090", true},
		{"127.0.0.1", true},
		{"192.0.2.7:9090", true},
		{"[::1]:9090", true},
		{"[::1]", true},
		{"[2001:db8::7]:9090", true},
		{"[fe80::1%25eth0]:9090", true},
		{"localhost", true},
		{"LocalHost:9090", true},
		{"localhost.:9090", true},
		{"edge-01.venue.lan:9090", true},
		{"edge-01", true},
		{"EDGE-01:9090", true},
		{"status.venue.example", true},
		{"status.venue.example:9090", true},
		{"grafana-scrape.venue.example:9090", true},
		{"", true}, // HTTP/1.0 without Host: no browser

		{"evil.example", false},
		{"evil.example:9090", false},
		{"edge-01.evil.example", false},
		{"edge-01.venue.lan.evil.example", false},
		{"venue.lan", false},
		{"status.venue.example.evil.example", false},
		{"localhost.evil.example", false},
		{"sub.localhost", false},
		{"127.0.0.1.nip.io", false},
		{"127.1", false}, // no browser sends this short form: it writes 127.0.0.1
	}
	for _, tt := range tests {
		if got := c.known(tt.host); got != tt.want {
			t.Errorf("Host %q: known = %v, want %v", tt.host, got, tt.want)
		}
	}
	// A reload changes the list without a new endpoint.
	listed.Store(&[]string{"new.venue.example"})
	if c.known("status.venue.example") || !c.known("new.venue.example") {
		t.Error("a changed admin.hosts is not in force at the next request")
	}
}

// TestHostnameUnknown: when the machine's name cannot be read, addresses
// and localhost still work.
func TestHostnameUnknown(t *testing.T) {
	c := newHostCheck(Config{Hostname: func() (string, error) { return "", io.ErrUnexpectedEOF }}, zerolog.Logger{})
	if !c.known("127.0.0.1:9090") || !c.known("localhost") || c.known("edge-01") {
		t.Error("without a hostname: want addresses and localhost only")
	}
}

// TestMisdirectedLogRateLimited: one warning a minute, the next one counts
// the refusals left out.
func TestMisdirectedLogRateLimited(t *testing.T) {
	var logs bytes.Buffer
	c := newHostCheck(Config{Hostname: func() (string, error) { return "edge-01", nil }}, zerolog.New(&logs))
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	h := c.wrap(http.NotFoundHandler())
	refuse := func(n int) {
		for range n {
			req := httptest.NewRequest(http.MethodGet, "http://evil.example/status.json", nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusMisdirectedRequest {
				t.Fatalf("%d, want 421", rec.Code)
			}
		}
	}
	refuse(5)
	now = now.Add(hostLogEvery - time.Second)
	refuse(3)
	now = now.Add(time.Second)
	refuse(1)
	var got []int
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var line struct {
			Host       string
			Suppressed int
		}
		if err := json.Unmarshal([]byte(l), &line); err != nil || line.Host != "evil.example" {
			t.Fatalf("line %q: %v", l, err)
		}
		got = append(got, line.Suppressed)
	}
	if len(got) != 2 || got[0] != 0 || got[1] != 7 {
		t.Errorf("suppressed counts per line %v, want [0 7]: the first refusal, then one a minute with the rest counted", got)
	}
}

// FuzzHostKnown: no name under a domain the relay does not own is ever
// known, however it is spelt, and no Host value panics.
func FuzzHostKnown(f *testing.F) {
	for _, s := range []string{"localhost", "127.0.0.1", "edge-01", "status.venue.example", "[::1]", "", "a.b", "LOCALHOST."} {
		f.Add(s)
	}
	c := newHostCheck(Config{
		Hosts:    func() []string { return []string{"status.venue.example"} },
		Hostname: func() (string, error) { return "edge-01.venue.lan", nil },
	}, zerolog.Logger{})
	f.Fuzz(func(t *testing.T, s string) {
		c.known(s)
		// A browser's Host is a name or [address], then an optional
		// numeric port; a name has no ':' or brackets of its own.
		if strings.ContainsAny(s, ":[]") {
			return
		}
		for _, h := range []string{s + ".evil.example", s + ".evil.example:9090", s + ".evil.example."} {
			if c.known(h) {
				t.Errorf("Host %q is known", h)
			}
		}
	})
}

// TestRebindingInBrowser: chromium loading the endpoint under a name that
// resolves to it, as a rebound attacker's name does, sends that name as
// Host and gets the 421 line, not the page; under a name of admin.hosts
// the page loads and its script reads /status.json.
func TestRebindingInBrowser(t *testing.T) {
	browser := headless.New(t)
	browser.Resolve("evil.example")
	browser.Resolve("status.venue.example")
	gather, relay := pageStatus(time.Now())
	s, _, stop := running(t, Config{Gather: gather, Relay: relay,
		Hosts: func() []string { return []string{"status.venue.example"} }})
	defer stop()
	_, port, _ := strings.Cut(s.Addr().String(), ":")

	raw, err := browser.DumpDOM("http://evil.example:"+port+"/", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(raw, "misdirected request") || strings.Contains(raw, "cms-http") {
		t.Errorf("evil.example: want the 421 line and no status, got:\n%s", raw)
	}
	raw, dom := loadPage(t, browser, "http://status.venue.example:"+port+"/", 3*time.Second)
	if len(dom.Find("data-listener", "cms-http")) != 1 {
		t.Errorf("status.venue.example (listed): the page did not draw the listeners:\n%s", raw)
	}
}

// TestPageSaysWhyRefused: a page opened under a name a reload then drops
// from admin.hosts gets 421 on its next read; its banner quotes the relay's
// line, which names the setting, instead of claiming no answer.
func TestPageSaysWhyRefused(t *testing.T) {
	browser := headless.New(t)
	browser.Resolve("status.venue.example")
	gather, relay := pageStatus(time.Now())
	var read atomic.Bool
	_, url, stop := running(t, Config{
		Gather: func() []Snapshot { read.Store(true); return gather() },
		Relay:  relay,
		// The name is listed until the first read: a reload then drops it.
		Hosts: func() []string {
			if read.Load() {
				return nil
			}
			return []string{"status.venue.example"}
		},
	})
	defer stop()
	_, port, _ := strings.Cut(strings.TrimPrefix(url, "http://"), ":")
	raw, dom := loadPage(t, browser, "http://status.venue.example:"+port+"/", 5*time.Second)
	conn := dom.Find("id", "conn")
	if len(conn) != 1 || regexp.MustCompile(`<p id="conn"[^>]* hidden`).MatchString(raw) ||
		!strings.Contains(conn[0].Text(), "The relay answered 421: misdirected request") ||
		!strings.Contains(conn[0].Text(), "admin.hosts") {
		t.Errorf("banner %v, want it shown with the relay's 421 line", conn)
	}
	if len(dom.Find("data-listener", "cms-http")) != 1 {
		t.Error("the figures of the first read are gone")
	}
}
