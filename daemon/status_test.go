package daemon

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"

	"github.com/edgerelay/relay/admin"
	"github.com/edgerelay/relay/internal/headless"
	"github.com/edgerelay/relay/internal/world"
)

// statusYAML: a TCP listener, a UDP one, and an exclusive raw printer whose
// device answers nowhere; startStatusWorld adds the admin endpoint, on
// loopback.
const statusYAML = `
acl: {file: hba.conf}
listeners:
  - {name: web, mode: tcp, listen: "127.0.0.1:%d", upstream: "%s"}
  - {name: rtb, mode: udp, listen: "127.0.0.1:%d", upstream: "%s"}
  - {name: printer, mode: raw, listen: "127.0.0.1:%d", upstream: "%s", raw: {exclusive: true}}
`

// statusACL rejects 127.0.0.3 on every listener, and 127.0.0.2 on the admin
// endpoint only.
const statusACL = `host admin 127.0.0.2/32 reject
host all 127.0.0.3/32 reject
host all all allow
`

type statusWorld struct {
	*relayWorld
	web, rtb, printer string // listen addresses
}

func startStatusWorld(t *testing.T) *statusWorld {
	t.Helper()
	web, rtb := newTCPEcho(t, "web"), newUDPEcho(t, "rtb")
	ports := []int{freePort(t, "tcp"), freePort(t, "udp"), freePort(t, "tcp")}
	yaml := adminOn(t) + fmt.Sprintf(statusYAML, ports[0], web.addr(), ports[1], rtb.addr(), ports[2], world.DeadAddr(t))
	w := startWorld(t, yaml, map[string]string{"hba.conf": statusACL})
	at := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }
	return &statusWorld{relayWorld: w, web: at(ports[0]), rtb: at(ports[1]), printer: at(ports[2])}
}

// webTraffic makes n connections that each send "hello\n" (6 bytes) and
// read "web:hello\n" (10).
func (w *statusWorld) webTraffic(t *testing.T, n int) {
	t.Helper()
	for range n {
		c, err := dialLine(t, "127.0.0.1", w.web)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.roundTrip("hello"); err != nil || got != "web:hello" {
			t.Fatalf("web: %q %v", got, err)
		}
		c.Close()
	}
}

// settled waits until no connection is open on any listener: a pipe counts
// its last bytes and leaves Active after the client already has the reply.
func (w *statusWorld) settled(t *testing.T) {
	t.Helper()
	world.Eventually(t, "every connection finished", func() bool {
		for _, s := range w.d.Snapshots() {
			if s.Conns != nil && s.Conns.Active != 0 {
				return false
			}
		}
		return true
	})
}

// readStatus GETs /status.json from the source address src.
func readStatus(t *testing.T, src, base string) (int, admin.Status) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c := http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	resp, err := c.Get(base + "/status.json")
	if err != nil {
		t.Fatalf("GET status.json from %s: %v", src, err)
	}
	defer resp.Body.Close()
	var st admin.Status
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatalf("status.json: %v", err)
		}
	}
	return resp.StatusCode, st
}

// TestStatusJSONCountsTraffic drives known traffic through a started daemon
// and reads exact counts, the unhealthy printer, and the ACL's rejection
// back from /status.json; the ACL's admin rule answers 403.
func TestStatusJSONCountsTraffic(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	w := startStatusWorld(t)
	base := "http://" + w.d.AdminAddr()

	w.webTraffic(t, 3)
	if got := tcpOutcome(t, "127.0.0.3", w.web); got != "closed" {
		t.Fatalf("rejected client: %q", got)
	}
	u := udpClient(t, "127.0.0.1")
	for range 2 {
		if got, err := udpRoundTrip(u, w.rtb, "ping", 5*time.Second); err != nil || got != "rtb:ping" {
			t.Fatalf("rtb: %q %v", got, err)
		}
	}
	if got := tcpOutcome(t, "127.0.0.1", w.printer); got != "closed" {
		t.Fatalf("printer client with a dead device: %q", got)
	}
	w.logs.Wait(t, `"end":"upstream_unreachable"`)
	w.settled(t)
	// A datagram is counted right after its send, so the client can hold
	// the second reply before the relay counted it, or the datagram that
	// asked for it (a new session's first ones are sent by its setup
	// worker, which the scheduler may hold after the send).
	world.Eventually(t, "rtb counted both pings and both replies", func() bool {
		for _, s := range w.d.Snapshots() {
			if s.Listener == "rtb" && s.UDP != nil && s.UDP.DatagramsToClient >= 2 && s.UDP.DatagramsToUpstream >= 2 {
				return true
			}
		}
		return false
	})

	code, st := readStatus(t, "127.0.0.1", base)
	if code != 200 {
		t.Fatalf("status.json from 127.0.0.1: %d", code)
	}
	byName := map[string]admin.Snapshot{}
	for _, s := range st.Listeners {
		byName[s.Listener] = s
	}
	if names := fmt.Sprint(listenerNames(st)); names != "[web rtb printer]" {
		t.Errorf("listeners %s, want config order [web rtb printer]", names)
	}
	web := byName["web"]
	if c := web.Conns; web.BytesToUpstream != 18 || web.BytesToClient != 30 || c == nil ||
		c.Accepted != 3 || c.RejectedACL != 1 || c.Active != 0 || c.DialFailures != 0 || web.State != admin.StateServing {
		t.Errorf("web = %+v conns %+v, want 18/30 bytes, 3 accepted, 1 rejected by the ACL", web, web.Conns)
	}
	rtb := byName["rtb"]
	if u := rtb.UDP; u == nil || u.SessionsCreated != 1 || u.DatagramsToUpstream != 2 || u.DatagramsToClient != 2 ||
		rtb.BytesToUpstream != 8 || rtb.BytesToClient != 16 {
		t.Errorf("rtb = %+v udp %+v, want 1 session, 2 datagrams and 8/16 bytes", rtb, rtb.UDP)
	}
	printer := byName["printer"]
	if len(printer.Upstreams) != 1 || printer.Upstreams[0].Health != "unhealthy" {
		t.Errorf("printer upstreams %+v, want its dead device unhealthy", printer.Upstreams)
	}
	if c := printer.Conns; c == nil || c.Accepted != 1 || c.DialFailures != 1 || c.Unreachable != 1 || printer.Raw == nil {
		t.Errorf("printer conns %+v raw %+v, want 1 accepted, 1 dial failure, 1 job unreachable", printer.Conns, printer.Raw)
	}
	if printer.HealthChecks || web.HealthChecks {
		t.Error("health_checks is true for listeners without a health section")
	}
	if p := st.Process; p.ConnectionsTotal != 5 || p.FDsOpen <= 0 || p.FDsLimit <= 0 {
		t.Errorf("process %+v, want 5 connections in all (3 web, 1 udp session, 1 printer) and fd figures", p)
	}
	if a := st.Relay.ACL; a == nil || a.Rules != 3 || len(a.Recent) != 1 ||
		!strings.HasPrefix(a.Recent[0].Client, "127.0.0.3:") || !strings.Contains(a.Recent[0].Rule, "hba.conf:2") {
		t.Errorf("acl %+v, want 3 rules and the one rejection of 127.0.0.3 by line 2", a)
	}
	if !st.Ready || st.Relay.Config == "" || st.Relay.Started.IsZero() {
		t.Errorf("ready %v config %q started %v", st.Ready, st.Relay.Config, st.Relay.Started)
	}

	// The file names admin, so its rules guard the endpoint even on
	// loopback: line 1 by name, line 2 through "all".
	for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
		if code, _ := readStatus(t, src, base); code != http.StatusForbidden {
			t.Errorf("status.json from %s: %d, want 403", src, code)
		}
	}
}

func listenerNames(st admin.Status) []string {
	var out []string
	for _, s := range st.Listeners {
		out = append(out, s.Listener)
	}
	return out
}

// heldProxy stands between the browser and the admin endpoint. It lets the
// page's first read of status.json through and reports it on first, then
// holds the second read until release is closed: the test sends more
// traffic in between, so the DOM can only show it if the page refreshed
// itself. (Chromium's virtual time does not run while a fetch is pending.)
type heldProxy struct {
	proxy   *httputil.ReverseProxy
	reads   atomic.Int32
	first   chan struct{}
	release chan struct{}
}

func (h *heldProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/status.json" {
		switch h.reads.Add(1) {
		case 1:
			defer close(h.first)
		case 2:
			select {
			case <-h.release:
			case <-time.After(time.Minute): // the test gave up; let the page go on
			}
		}
	}
	h.proxy.ServeHTTP(w, r)
}

// TestStatusPageRefreshesInBrowser loads the status page of a relay
// carrying traffic in headless chromium; traffic sent after the page's
// first read shows up in the DOM after its refresh, beside the printer's
// unhealthy device. A screenshot is left in headless.ArtefactDir().
func TestStatusPageRefreshesInBrowser(t *testing.T) {
	browser := headless.New(t)
	w := startStatusWorld(t)
	w.webTraffic(t, 3)
	if got := tcpOutcome(t, "127.0.0.1", w.printer); got != "closed" {
		t.Fatalf("printer client with a dead device: %q", got)
	}
	w.logs.Wait(t, `"end":"upstream_unreachable"`)

	target, _ := url.Parse("http://" + w.d.AdminAddr())
	hp := &heldProxy{proxy: httputil.NewSingleHostReverseProxy(target), first: make(chan struct{}), release: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: hp}
	go srv.Serve(ln)
	defer srv.Close()
	pageURL := "http://" + ln.Addr().String() + "/"

	type result struct {
		dom string
		err error
	}
	done := make(chan result, 1)
	go func() {
		dom, err := browser.DumpDOM(pageURL, 5*time.Second)
		done <- result{dom, err}
	}()
	select {
	case <-hp.first:
	case r := <-done:
		t.Fatalf("chromium finished before reading status.json: %v\n%s", r.err, r.dom)
	case <-time.After(3 * time.Minute):
		t.Fatal("chromium never read status.json")
	}
	w.webTraffic(t, 2) // after the first read: only a refresh can show 5
	w.settled(t)
	close(hp.release)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	dom, err := headless.Parse(r.dom)
	if err != nil {
		t.Fatal(err)
	}
	cards := dom.Find("data-listener", "web")
	if len(cards) != 1 {
		t.Fatalf("no card for listener web in:\n%s", r.dom)
	}
	if got := cards[0].Find("data-field", "accepted"); len(got) != 1 || got[0].Text() != "5" {
		t.Errorf("web accepted shows %v, want 5 (3 before the page loaded, 2 before its refresh)\n%s", got, r.dom)
	}
	if got := cards[0].Find("data-field", "bytes_to_upstream"); len(got) != 1 || got[0].Text() != "30 B" {
		t.Errorf("web bytes to upstream shows %v, want 30 B", got)
	}
	for _, name := range []string{"rtb", "printer"} {
		if len(dom.Find("data-listener", name)) != 1 {
			t.Errorf("no card for listener %s", name)
		}
	}
	if up := dom.Find("data-health", "unhealthy"); len(up) != 1 || !strings.Contains(up[0].Text(), "UNHEALTHY") {
		t.Errorf("the printer's dead device is not shown unhealthy: %v", up)
	}
	if n := hp.reads.Load(); n < 2 {
		t.Errorf("the page read status.json %d times, want a refresh", n)
	}

	shot := filepath.Join(headless.ArtefactDir(), "status-page-relay.png")
	if err := browser.Screenshot(pageURL, shot, 1280, 1400, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
}
