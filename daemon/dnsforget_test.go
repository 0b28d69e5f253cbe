package daemon

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"

	"github.com/edgerelay/relay/internal/world"
	"github.com/edgerelay/relay/upstream"
)

// TestReloadForgetsUnusedNames: the daemon's one DNS cache holds the
// upstream names of the listeners in force (and of those still draining),
// no others. A reload that removes the only listener naming a host, or
// changes a listener to name another host, drops the old name once its
// retired listener has drained; a name still named stays cached and is not
// asked again. Names go to a DNS server on loopback, never the system's.
func TestReloadForgetsUnusedNames(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	dns := world.NewDNSServer(t)
	for _, name := range []string{"web.venue.test", "box.venue.test", "web2.venue.test"} {
		dns.Set(name, world.Zone{Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, TTL: 300})
	}
	r := upstream.NewResolver(upstream.ResolverConfig{Servers: []string{dns.Addr()}, Timeout: time.Second})
	t.Cleanup(r.Close)
	web, box := newTCPEcho(t, "web"), newTCPEcho(t, "box")
	webPort, boxPort := freePort(t, "tcp"), freePort(t, "tcp")
	_, webUp, _ := net.SplitHostPort(web.addr())
	_, boxUp, _ := net.SplitHostPort(box.addr())
	render := func(webHost string, withBox bool) string {
		y := fmt.Sprintf("admin: {listen: \"\"}\nlisteners:\n  - {name: web, mode: tcp, listen: \"127.0.0.1:%d\", upstream: \"%s:%s\"}\n",
			webPort, webHost, webUp)
		if withBox {
			y += fmt.Sprintf("  - {name: box, mode: tcp, listen: \"127.0.0.1:%d\", upstream: \"box.venue.test:%s\"}\n", boxPort, boxUp)
		}
		return y
	}
	w := startWorldWith(t, t.TempDir(), render("web.venue.test", true), nil, Options{Resolver: r})
	webAt, boxAt := fmt.Sprintf("127.0.0.1:%d", webPort), fmt.Sprintf("127.0.0.1:%d", boxPort)
	if got := tcpOutcome(t, "", webAt); got != "web:hello" {
		t.Fatalf("web: %q", got)
	}
	if got := tcpOutcome(t, "", boxAt); got != "box:hello" {
		t.Fatalf("box: %q", got)
	}
	wantNames(t, r, "box.venue.test", "web.venue.test")

	w.writeFile("relay.yaml", render("web.venue.test", false))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	w.logs.Wait(t, `"listener":"box"`, "retired listener drained")
	wantNames(t, r, "web.venue.test")
	asked := dns.Queries.Load()
	if got := tcpOutcome(t, "", webAt); got != "web:hello" {
		t.Fatalf("web after the reload: %q", got)
	}
	if n := dns.Queries.Load() - asked; n != 0 {
		t.Errorf("%d queries for a name still cached, want none", n)
	}

	w.writeFile("relay.yaml", render("web2.venue.test", false))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := tcpOutcome(t, "", webAt); got != "web:hello" {
		t.Fatalf("web on web2.venue.test: %q", got)
	}
	w.logs.Wait(t, `"listener":"web"`, "retired listener drained")
	wantNames(t, r, "web2.venue.test")
	_ = w.d.Close()
}

// wantNames checks the names r's cache holds.
func wantNames(t *testing.T, r *upstream.Resolver, want ...string) {
	t.Helper()
	if got := r.Names(); !slices.Equal(got, want) {
		t.Errorf("the DNS cache holds %q, want %q", got, want)
	}
}
