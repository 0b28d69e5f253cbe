package config

import "testing"

// TestUpstreamLoopThroughListeners: listeners that forward to each other
// in a ring (a to b, b to a) send every connection round the relay until
// max_conns or the file descriptors run out, as a listener that is its own
// upstream does; that one was refused, a ring of two or more was accepted.
// The ring is reported once, at the last of its listeners in the file,
// with the way round. A chain that ends elsewhere (a TLS listener handing
// to a local one) is fine, and so is a ring over different protocols.
func TestUpstreamLoopThroughListeners(t *testing.T) {
	wantProblem(t, "listeners:\n"+
		"  - {name: a, mode: tcp, listen: '127.0.0.1:7001', upstream: '127.0.0.1:7002'}\n"+
		"  - {name: b, mode: raw, listen: '0.0.0.0:7002', upstream: ['10.0.0.5:9100', '127.0.0.1:7001']}\n",
		"listeners[1].upstream", "127.0.0.1:7001 leads back to this listener (b 0.0.0.0:7002 -> a 127.0.0.1:7001 -> b 0.0.0.0:7002): every connection would loop through the relay")
	es := problemsOf(t, "listeners:\n"+
		"  - {name: a, mode: udp, listen: '127.0.0.1:7001-7100', upstream: '127.0.0.1:8001-8100'}\n"+
		"  - {name: b, mode: udp, listen: '127.0.0.1:8001-8100', upstream: '127.0.0.1:9001-9100'}\n"+
		"  - {name: c, mode: udp, listen: '[::]:9001-9100', upstream: '127.0.0.1:7001-7100'}\n")
	if len(es) != 1 || es[0].Path != "listeners[2].upstream" {
		t.Errorf("a ring of three 100-port ranges: want one problem at listeners[2].upstream, got %q", es)
	}
	for _, yaml := range []string{
		"listeners:\n" +
			"  - {name: a, mode: tcp, listen: '0.0.0.0:7001', upstream: '127.0.0.1:7002'}\n" +
			"  - {name: b, mode: tcp, listen: '127.0.0.1:7002', upstream: '10.0.0.5:80'}\n",
		"listeners:\n" +
			"  - {name: a, mode: tcp, listen: '127.0.0.1:7001', upstream: '127.0.0.1:7002'}\n" +
			"  - {name: b, mode: udp, listen: '127.0.0.1:7002', upstream: '127.0.0.1:7001'}\n",
		"listeners:\n" +
			"  - {name: a, mode: tcp, listen: '127.0.0.2:7001', upstream: '127.0.0.1:7002'}\n" +
			"  - {name: b, mode: tcp, listen: '127.0.0.1:7002', upstream: '127.0.0.3:7001'}\n",
	} {
		if _, err := parseString(t, yaml); err != nil {
			t.Errorf("%s: %v", yaml, err)
		}
	}
}
