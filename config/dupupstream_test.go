package config

import "testing"

// TestUpstreamListedTwice: a failover list that names one upstream twice
// (10.0.0.5 copied where the backup 10.0.0.6 was meant) is refused at the
// second entry; it was accepted, and the listener had no backup.
func TestUpstreamListedTwice(t *testing.T) {
	wantProblem(t, "listeners:\n  - {name: a, mode: tcp, listen: '127.0.0.1:8080', upstream: ['10.0.0.5:80', '10.0.0.7:80', '10.0.0.5:80']}\n",
		"listeners[0].upstream[2]", `"10.0.0.5:80" is listed twice (also upstream[0]): a failover list names each upstream once`)
	wantProblem(t, "listeners:\n  - {name: a, mode: udp, listen: '127.0.0.1:8100-8101', upstream: ['10.0.0.6:8100-8101', '[::ffff:10.0.0.6]:8100-8101']}\n",
		"listeners[0].upstream[1]", "listed twice")
	if _, err := parseString(t, "listeners:\n  - {name: a, mode: tcp, listen: '127.0.0.1:8080', upstream: ['10.0.0.5:80', '10.0.0.5:81', 'printer.local:80']}\n"); err != nil {
		t.Error(err)
	}
}

// TestUpstreamListedTwiceForOnePort: a single address and a range can name
// the same upstream for one listen port (10.0.0.5:80 and 10.0.0.5:80-81
// both send port 18000 to 10.0.0.5:80). That was accepted, and port 18000
// had that upstream twice in its failover list and no backup.
func TestUpstreamListedTwiceForOnePort(t *testing.T) {
	wantProblem(t, "listeners:\n  - {name: a, mode: tcp, listen: '127.0.0.1:18000-18001', upstream: ['10.0.0.5:80', '10.0.0.5:80-81']}\n",
		"listeners[0].upstream[1]", `"10.0.0.5:80-81" names 10.0.0.5:80 for 127.0.0.1:18000, as upstream[0] does: a failover list names each upstream once`)
	wantProblem(t, "listeners:\n  - {name: a, mode: udp, listen: '127.0.0.1:8100-8102', upstream: ['10.0.0.6:9000-9002', '[::ffff:10.0.0.6]:9002']}\n",
		"listeners[0].upstream[1]", `"[::ffff:10.0.0.6]:9002" names [::ffff:10.0.0.6]:9002 for 127.0.0.1:8102, as upstream[0] does`)
	// Ranges that never meet on one listen port are two upstreams.
	if _, err := parseString(t, "listeners:\n  - {name: a, mode: tcp, listen: '127.0.0.1:18000-18001', upstream: ['10.0.0.5:80-81', '10.0.0.5:81-82']}\n"); err != nil {
		t.Error(err)
	}
}
