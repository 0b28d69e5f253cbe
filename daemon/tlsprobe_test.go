package daemon

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"

	"github.com/edgerelay/relay/certs"
	"github.com/edgerelay/relay/internal/world"
)

// TestUpstreamTLSProbeAfterNewCA: the venue's certificate now comes from a
// CA the box office does not trust yet. The active check handshakes, so
// the venue is down with the reason (not up after a bare connect), clients
// are closed at once, and the re-tries keep it down; a reload that brings
// the new CA brings the venue back at once (its handshake failed; see
// TestReloadFixedTLSTriesUpstreamAtOnce), a client's line goes through,
// and the active checks that follow handshake with the new CA: the venue
// stays up.
func TestUpstreamTLSProbeAfterNewCA(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	w, at, venue, renewedCA := boxOfficeOfRenewedVenue(t, `""`, "    health: {interval: 1s, timeout: 1s}\n")

	down := w.logs.Wait(t, `"message":"upstream down"`)
	if !strings.Contains(down, "health check: tls with") || !strings.Contains(down, "(unknown_authority)") {
		t.Errorf("down line: %s", down)
	}
	c, err := dialLine(t, "", at)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.roundTrip("job 1"); err == nil {
		t.Fatalf("a client got %q from a venue that is down", got)
	}
	// The check and two re-tries a second apart reached the venue; with a
	// TCP probe the first re-try would have brought it up.
	world.Eventually(t, "two re-tries of the venue", func() bool {
		return venue.Accepted() >= 3 || w.logs.Count(`"message":"upstream up"`) > 0
	})
	if n := w.logs.Count(`"message":"upstream up"`); n != 0 {
		t.Fatalf("the venue came up with a certificate from an untrusted CA:\n%s", w.logs)
	}

	w.writeFile("ca.crt", renewedCA)
	if err := w.d.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	w.logs.Wait(t, `"message":"upstream state reset"`, "upstream_tls files changed")
	c, err = dialLine(t, "", at)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.roundTrip("job 2"); err != nil || got != "venue:job 2" {
		t.Fatalf("after the reload: %q, %v", got, err)
	}
	c.Close()
	// Two more connections to the venue: the first check round after the
	// job is over (a round waits for its probes before the next starts).
	seen := venue.Accepted()
	world.Eventually(t, "two checks with the new CA", func() bool { return venue.Accepted() >= seen+2 })
	if n := w.logs.Count(`"message":"upstream down"`); n != 1 {
		t.Errorf("%d down lines, want 1:\n%s", n, w.logs)
	}
	_ = w.d.Close()
}

// boxOfficeOfRenewedVenue starts a box office whose printer listener
// (listening at at) originates TLS to a renewedVenue, trusting the old CA
// (ca.crt) only: adminListen is admin.listen as YAML, extra more keys of
// the listener, each line indented four spaces.
func boxOfficeOfRenewedVenue(t *testing.T, adminListen, extra string) (w *relayWorld, at string, venue *world.Backend, renewedCA string) {
	t.Helper()
	venue, oldCA, renewedCA := renewedVenue(t)
	at = fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	yaml := fmt.Sprintf(`admin: {listen: %s}
listeners:
  - name: printer
    mode: tcp
    listen: %s
    upstream: %s
    upstream_tls: {ca: ca.crt}
%s`, adminListen, at, venue.Addr(), extra)
	return startWorld(t, yaml, map[string]string{"ca.crt": oldCA}), at, venue, renewedCA
}

// renewedVenue is a venue that answers each line with "venue:" and the
// line, behind a certificate from a CA newer than the one a box office
// trusts at first: oldCA and renewedCA are the two CAs' certificates, the
// contents of a box office's ca.crt before and after it learns of the new.
func renewedVenue(t *testing.T) (venue *world.Backend, oldCA, renewedCA string) {
	t.Helper()
	old, renewed := newTestCA(t, t.TempDir()), newTestCA(t, t.TempDir())
	venueCert := renewed.issue(certs.KindServer, "venue", "venue-2027")
	venue = world.NewBackend(t, func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{venueCert}})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		sc := bufio.NewScanner(tc)
		for sc.Scan() {
			if _, err := fmt.Fprintf(tc, "venue:%s\n", sc.Text()); err != nil {
				return
			}
		}
	})
	caFile := func(ca *testCA) string {
		data, err := os.ReadFile(ca.path("ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	return venue, caFile(old), caFile(renewed)
}
