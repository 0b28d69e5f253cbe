package config

import "testing"

// TestNullSectionIsEmptySection: a listener section written with nothing
// after it ("tls:" whose keys were commented out, which YAML reads as null)
// is checked as an empty section. It was dropped as if absent: a listener
// meant to terminate TLS served plain TCP, an upstream_tls listener dialled
// its upstream in the clear, and `relay check` said nothing.
func TestNullSectionIsEmptySection(t *testing.T) {
	const tcp = "listeners:\n  - name: a\n    mode: tcp\n    listen: 127.0.0.1:7001\n    upstream: 127.0.0.1:7002\n"
	for _, tc := range []struct {
		name, yaml, path, msg string
	}{
		{"tls", tcp + "    tls:\n    #  cert: venue.crt\n", "listeners[0].tls.cert", "missing"},
		{"upstream_tls", tcp + "    upstream_tls:\n", "listeners[0].upstream_tls.ca", "missing"},
		{"per_source", tcp + "    per_source:\n", "listeners[0].per_source", "sets no limit"},
		{"health", tcp + "    health:\n", "listeners[0].health.interval", "missing"},
		{"raw on tcp", tcp + "    raw:\n", "listeners[0].raw", "only for mode raw"},
		{"ftp without data_ports", "listeners:\n  - {name: f, mode: ftp, listen: '127.0.0.1:2121', upstream: '127.0.0.1:21', ftp: }\n",
			"listeners[0].ftp.data_ports", "missing"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantProblem(t, tc.yaml, tc.path, tc.msg) })
	}

	// A null section whose keys all have defaults is still valid.
	cfg, err := parseString(t, "listeners:\n  - {name: u, mode: udp, listen: '127.0.0.1:8100', upstream: '127.0.0.1:8101', udp: }\n"+
		"  - {name: r, mode: raw, listen: '127.0.0.1:9100', upstream: '127.0.0.1:9101', raw: }\nlog:\nreload:\n")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listeners[0].UDP.MaxSessions == 0 || cfg.Listeners[1].Raw.QueueTimeout == 0 {
		t.Errorf("null udp or raw section lost its defaults: %+v %+v", cfg.Listeners[0].UDP, cfg.Listeners[1].Raw)
	}
}
