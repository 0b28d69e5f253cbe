package config

import "testing"

// TestUpstreamLocalhost: relay looks upstream names up in DNS only, never
// in /etc/hosts, so "localhost" went to the nameservers, whose answer is
// theirs to give; and when it was this box, listen 0.0.0.0:18000 with
// upstream localhost:18000 was a loop that relay check passed, since only
// IP addresses count as certainly this box. It is refused, with the
// address to write instead.
func TestUpstreamLocalhost(t *testing.T) {
	for _, up := range []string{"localhost:18000", "LocalHost.:80", "printer.localhost:9100"} {
		wantProblem(t, "listeners:\n  - {name: a, mode: tcp, listen: '0.0.0.0:18000', upstream: '"+up+"'}\n",
			"listeners[0].upstream", "write 127.0.0.1 or [::1]")
	}
	if _, err := parseString(t, "listeners:\n  - {name: a, mode: tcp, listen: '0.0.0.0:18000', upstream: 'localhost-cms.venue.example:80'}\n"); err != nil {
		t.Error(err)
	}
}
