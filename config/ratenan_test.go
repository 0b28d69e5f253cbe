package config

import "testing"

// TestRateNotANumber: YAML's .nan and .inf reached the rates as floats,
// while the same words as text ("inf") were refused. A NaN rate passed
// every comparison: per_source: {rate: .nan} limited nothing without a
// word, and udp.per_source_rate: .nan was handed to the UDP plane.
func TestRateNotANumber(t *testing.T) {
	for _, v := range []string{".nan", ".inf", "-.inf", ".NaN", ".Inf"} {
		wantProblem(t, "listeners:\n  - {name: a, mode: tcp, listen: '127.0.0.1:80', upstream: '10.0.0.5:80', per_source: {rate: "+v+"}}\n",
			"listeners[0].per_source.rate", "want a rate like 10/s")
		wantProblem(t, "listeners:\n  - {name: u, mode: udp, listen: '127.0.0.1:8100', upstream: '10.0.0.6:8100', udp: {per_source_rate: "+v+"}}\n",
			"listeners[0].udp.per_source_rate", "want a rate like 10/s")
	}
}
