package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/edgerelay/relay/internal/world"
)

// TestCheckResolve: relay check -resolve asks for every upstream name (here
// of a loopback DNS server the test runs, never the system's), prints the
// answers and fails on a name that does not resolve.
func TestCheckResolve(t *testing.T) {
	dns := world.NewDNSServer(t)
	dns.Set("cms.venue.test", world.Zone{Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.7")}, TTL: 60})
	dns.Set("rtb.venue.test", world.Zone{Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.8"), netip.MustParseAddr("::1")}, TTL: 1})
	good := writeConfig(t, `admin: {listen: ""}
listeners:
  - {name: web, mode: tcp, listen: "127.0.0.1:18080", upstream: ["cms.venue.test:80", "127.0.0.9:80"]}
  - {name: rtb, mode: udp, listen: "127.0.0.1:18100-18101", upstream: "rtb.venue.test:8100-8101"}
`)
	code, out, errs := runCmd("check", "-config", good, "-resolve", "-nameserver", dns.Addr())
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	want := "resolve cms.venue.test: 127.0.0.7 (ttl 1m0s)\nresolve rtb.venue.test: 127.0.0.8, ::1 (ttl 5s)\n"
	if out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}

	bad := writeConfig(t, `admin: {listen: ""}
listeners:
  - {name: web, mode: tcp, listen: "127.0.0.1:18080", upstream: ["gone.venue.test:80", "cms.venue.test:80"]}
`)
	code, out, errs = runCmd("check", "-config", bad, "-resolve", "-nameserver", dns.Addr())
	if code != 1 || !strings.Contains(errs, "resolve gone.venue.test: ") || !strings.Contains(errs, "no such host") ||
		!strings.Contains(errs, "1 of 2 upstream names did not resolve") || !strings.Contains(out, "resolve cms.venue.test: 127.0.0.7") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if n := strings.Count(errs, "resolve gone.venue.test"); n != 1 {
		t.Errorf("stderr names the failed lookup %d times, want once: %q", n, errs)
	}
}
