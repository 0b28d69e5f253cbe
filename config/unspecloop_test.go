package config

import "testing"

// TestUpstreamUnspecifiedIsLoopback: Linux sends a connect to 0.0.0.0 to
// 127.0.0.1 and one to [::] to [::1], so an upstream written as 0.0.0.0:P
// (an admin copying the listen line) reaches a listener on 127.0.0.1:P.
// It was accepted: one client connection became 20 through the relay
// itself until max_conns: 20 refused the next (seen with relay run on
// loopback). The same holds through another listener.
func TestUpstreamUnspecifiedIsLoopback(t *testing.T) {
	wantProblem(t, "listeners:\n  - {name: a, mode: tcp, listen: '127.0.0.1:18500', upstream: '0.0.0.0:18500'}\n",
		"listeners[0].upstream", "0.0.0.0:18500 is this listener's own address (127.0.0.1:18500)")
	wantProblem(t, "listeners:\n  - {name: a, mode: udp, listen: '[::1]:8100-8101', upstream: '[::]:8100-8101'}\n",
		"listeners[0].upstream", "[::]:8100 is this listener's own address ([::1]:8100)")
	wantProblem(t, "listeners:\n"+
		"  - {name: a, mode: tcp, listen: '127.0.0.1:7001', upstream: '0.0.0.0:7002'}\n"+
		"  - {name: b, mode: tcp, listen: '127.0.0.1:7002', upstream: '0.0.0.0:7001'}\n",
		"listeners[1].upstream", "0.0.0.0:7001 leads back to this listener")
	for _, yaml := range []string{
		// 0.0.0.0 is 127.0.0.1, not every loopback address.
		"listeners:\n  - {name: a, mode: tcp, listen: '127.0.0.2:7001', upstream: '0.0.0.0:7001'}\n",
		// Each family to its own loopback.
		"listeners:\n  - {name: a, mode: tcp, listen: '[::1]:7001', upstream: '0.0.0.0:7001'}\n",
		"listeners:\n  - {name: a, mode: tcp, listen: '127.0.0.1:7001', upstream: '[::]:7001'}\n",
	} {
		if _, err := parseString(t, yaml); err != nil {
			t.Errorf("%s: %v", yaml, err)
		}
	}
}
