package config

import "testing"

// TestTCPListenOnMulticastOrBroadcast: Linux lets a TCP socket bind and
// listen on a multicast or the broadcast address, and no connection ever
// arrives there. listen: 224.0.0.1:18801 passed relay check (with a
// warning to set freebind, which would not help) and the relay started
// with a listener nobody could reach (seen with relay run on loopback).
func TestTCPListenOnMulticastOrBroadcast(t *testing.T) {
	for _, c := range []struct{ mode, listen string }{
		{"tcp", "224.0.0.1:18801"},
		{"raw", "255.255.255.255:10001"},
		{"ftp", "'[ff02::1]:21'"},
	} {
		wantProblem(t, "listeners:\n  - {name: a, mode: "+c.mode+", listen: "+c.listen+", upstream: '10.0.0.5:80', ftp: {data_ports: 30000-30010}}\n",
			"listeners[0].listen", "no TCP connection can arrive at")
	}
	wantProblem(t, "admin: {listen: '239.1.1.1:9090'}\nlisteners:"+one, "admin.listen", "no TCP connection can arrive at")
}

// TestTCPUpstreamMulticastOrBroadcast: Linux refuses a TCP connect to a
// multicast or the broadcast address (network is unreachable), so such an
// upstream is down from the first dial on; relay check passed it.
func TestTCPUpstreamMulticastOrBroadcast(t *testing.T) {
	wantProblem(t, "listeners:\n  - {name: a, mode: tcp, listen: '127.0.0.1:80', upstream: ['10.0.0.5:80', '255.255.255.255:80']}\n",
		"listeners[0].upstream[1]", "255.255.255.255 is a multicast or broadcast address: no TCP connection can be made to it")
	wantProblem(t, "listeners:\n  - {name: a, mode: raw, listen: '127.0.0.1:80', upstream: '[ff05::2]:9100'}\n",
		"listeners[0].upstream", "no TCP connection can be made to it")
	if _, err := parseString(t, "listeners:\n  - {name: a, mode: udp, listen: '127.0.0.1:8100', upstream: '239.1.1.1:8100'}\n"); err != nil {
		t.Errorf("a udp listener may send to a multicast group: %v", err)
	}
}
