package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWritePlots draws a scenario with relay, direct and a peer, and a
// forwarder-only metric direct has no figure for: one SVG, every
// forwarder's name on it, both metrics' titles.
func TestWritePlots(t *testing.T) {
	res := &scenarioResult{
		Name: "tcp",
		Metrics: []metric{
			{key: "gbps", label: "throughput 1 stream", unit: "Gbit/s", higher: true},
			{key: "cpu", label: "CPU per GB", unit: "s", forwarderOnly: true},
		},
		Values: map[string]map[string][]float64{
			"gbps": {"relay": {9.1, 9.4, 8.8}, "direct": {10.2, 10.0, 10.5}, "haproxy": {8.1, 8.3, 7.9}},
			"cpu":  {"relay": {0.4, 0.5, 0.45}, "haproxy": {0.6, 0.62, 0.58}},
		},
	}
	dir := t.TempDir()
	if err := writePlots(dir, []*scenarioResult{res, {Name: "empty"}}); err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(filepath.Join(dir, "tcp.svg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "relay", "direct", "haproxy", "tcp: throughput 1 stream", "tcp: CPU per GB", "higher is better"} {
		if !strings.Contains(string(svg), want) {
			t.Errorf("tcp.svg lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "empty.svg")); !os.IsNotExist(err) {
		t.Errorf("a scenario with no metrics got a chart: %v", err)
	}
}
