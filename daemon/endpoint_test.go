package daemon

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"
)

// adminYAML is a config with one TCP listener and the admin endpoint at %s.
const adminYAML = `
admin: {listen: "%s"}
listeners:
  - {name: web, mode: tcp, listen: "127.0.0.1:%d", upstream: "%s"}
`

// TestAdminMoveToBusyPortKeepsOldEndpoint: a reload that moves admin.listen
// to a port another program holds must leave the old endpoint serving, and
// say so in the log and on the status (issue 11, item 12: it left the relay
// with no /metrics at all). Both orders are covered: a port elsewhere (the
// new one is bound first) and the same port on another address (the old
// one must let go first and is taken back).
func TestAdminMoveToBusyPortKeepsOldEndpoint(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	web := newTCPEcho(t, "web")
	port := freePort(t, "tcp")
	w := startWorld(t, fmt.Sprintf(adminYAML, fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp")), port, web.addr()), nil)
	first := w.d.AdminAddr()
	_, firstPort, _ := net.SplitHostPort(first)

	busyElsewhere := holdPort(t, "127.0.0.1:0")
	busySamePort := holdPort(t, "127.0.0.2:"+firstPort)
	for _, busy := range []string{busyElsewhere, busySamePort} {
		w.writeFile("relay.yaml", fmt.Sprintf(adminYAML, busy, port, web.addr()))
		if err := w.d.Reload(); err != nil {
			t.Fatalf("reload to busy %s: %v (the listeners' reload must stand)", busy, err)
		}
		if got := w.d.AdminAddr(); got != first {
			t.Fatalf("after moving to busy %s: admin on %q, want still %s", busy, got, first)
		}
		if code, body := scrape(t, "http://"+first+"/healthz"); code != 200 {
			t.Fatalf("old endpoint after moving to busy %s: %d %q", busy, code, body)
		}
		if e := w.d.Facts().AdminError; !strings.Contains(e, busy) || !strings.Contains(e, "keeps serving on "+first) {
			t.Errorf("status admin_error = %q, want it to name %s and the address still serving", e, busy)
		}
		if !strings.Contains(w.logs.String(), "admin endpoint not moved") {
			t.Errorf("no log line says the endpoint was not moved:\n%s", w.logs)
		}
	}

	// A free address: the endpoint moves, the old one closes, the error clears.
	free := fmt.Sprintf("127.0.0.2:%d", freePort(t, "tcp"))
	w.writeFile("relay.yaml", fmt.Sprintf(adminYAML, free, port, web.addr()))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	moved := w.d.AdminAddr()
	if moved != free {
		t.Fatalf("admin on %q after moving to %s", moved, free)
	}
	if code, _ := scrape(t, "http://"+moved+"/healthz"); code != 200 {
		t.Fatalf("new endpoint: %d", code)
	}
	if c, err := net.Dial("tcp", first); err == nil {
		c.Close()
		t.Errorf("old endpoint %s still accepts after the move", first)
	}
	if e := w.d.Facts().AdminError; e != "" {
		t.Errorf("admin_error = %q after a successful move", e)
	}
}

// holdPort listens on addr until the test ends and returns the bound address.
func holdPort(t *testing.T, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// TestAdminHostsFollowReload: the endpoint answers to the names of
// admin.hosts in force, refuses others with 421, and a reload that changes
// the list applies it to the endpoint already serving (no rebind).
func TestAdminHostsFollowReload(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	web := newTCPEcho(t, "web")
	port := freePort(t, "tcp")
	const hostsYAML = `
admin: {listen: "127.0.0.1:%d", hosts: [%s]}
listeners:
  - {name: web, mode: tcp, listen: "127.0.0.1:%d", upstream: "%s"}
`
	adminPort := freePort(t, "tcp")
	w := startWorld(t, fmt.Sprintf(hostsYAML, adminPort, "Status.Venue.Example", port, web.addr()), nil)
	at := w.d.AdminAddr()
	expect := func(host string, want int) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "http://"+at+"/status.json", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: %d %q, want %d", host, resp.StatusCode, body, want)
		}
	}
	expect(fmt.Sprintf("status.venue.example:%d", adminPort), http.StatusOK)
	expect(fmt.Sprintf("other.venue.example:%d", adminPort), http.StatusMisdirectedRequest)
	expect(at, http.StatusOK)

	w.writeFile("relay.yaml", fmt.Sprintf(hostsYAML, adminPort, "other.venue.example", port, web.addr()))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := w.d.AdminAddr(); got != at {
		t.Fatalf("admin moved from %s to %s on a reload that changed only admin.hosts", at, got)
	}
	expect(fmt.Sprintf("status.venue.example:%d", adminPort), http.StatusMisdirectedRequest)
	expect(fmt.Sprintf("other.venue.example:%d", adminPort), http.StatusOK)
}

// TestReloadRefusesAdminPortZero: a reload whose admin.listen has port 0
// is refused with the key and the value, and the endpoint stays where it
// was. Before, the endpoint moved to a port the kernel picked, which
// nobody was told.
func TestReloadRefusesAdminPortZero(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	web := newTCPEcho(t, "web")
	port, at := freePort(t, "tcp"), fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	w := startWorld(t, fmt.Sprintf(adminYAML, at, port, web.addr()), nil)
	w.writeFile("relay.yaml", fmt.Sprintf(adminYAML, "127.0.0.1:0", port, web.addr()))
	err := w.d.Reload()
	if err == nil || !strings.Contains(err.Error(), `admin.listen: "127.0.0.1:0": port 0`) {
		t.Errorf("reload to admin port 0: %v, want it refused naming admin.listen and the value", err)
	}
	if got := w.d.AdminAddr(); got != at {
		t.Errorf("admin on %q after the refused reload, want still %s", got, at)
	}
}
