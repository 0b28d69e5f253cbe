package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestPerSourceSection(t *testing.T) {
	tests := []struct {
		name    string
		section string
		want    PerSource
	}{
		{"max_conns only", "{max_conns: 20}", PerSource{MaxConns: 20, IPv4Prefix: 32, IPv6Prefix: 64}},
		{"rate per second, burst from rate", "{rate: 10/s}", PerSource{Rate: 10, Burst: 10, IPv4Prefix: 32, IPv6Prefix: 64}},
		{"rate per minute", "{rate: 120/m, burst: 5}", PerSource{Rate: 2, Burst: 5, IPv4Prefix: 32, IPv6Prefix: 64}},
		{"rate per hour below one a second", "{rate: 1800/h}", PerSource{Rate: 0.5, Burst: 1, IPv4Prefix: 32, IPv6Prefix: 64}},
		{"plain number is per second", "{rate: 2.5}", PerSource{Rate: 2.5, Burst: 3, IPv4Prefix: 32, IPv6Prefix: 64}},
		{"prefixes", "{max_conns: 3, ipv4_prefix: 24, ipv6_prefix: 48}", PerSource{MaxConns: 3, IPv4Prefix: 24, IPv6Prefix: 48}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseString(t, "listeners:\n  - {name: a, mode: tcp, listen: ':80', upstream: '10.0.0.5:80', per_source: "+tc.section+"}\n")
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Listeners[0].PerSource; got != tc.want {
				t.Fatalf("PerSource = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPerSourceErrors(t *testing.T) {
	tests := []struct {
		name, listener, path, msg string
	}{
		{"no limit", "mode: tcp, per_source: {ipv4_prefix: 24}", "listeners[0].per_source", "sets no limit"},
		{"burst without rate", "mode: tcp, per_source: {max_conns: 2, burst: 4}", "listeners[0].per_source.burst", "only with rate"},
		{"bad rate", "mode: tcp, per_source: {rate: fast}", "listeners[0].per_source.rate", "want a rate like 10/s"},
		{"negative rate", "mode: tcp, per_source: {rate: -1/s}", "listeners[0].per_source.rate", "must not be negative"},
		{"ipv6 prefix too long", "mode: tcp, per_source: {max_conns: 2, ipv6_prefix: 129}", "listeners[0].per_source.ipv6_prefix", "between 1 and 128"},
		{"ipv4 prefix zero", "mode: raw, per_source: {max_conns: 2, ipv4_prefix: 0}", "listeners[0].per_source.ipv4_prefix", "between 1 and 32"},
		{"udp", "mode: udp, per_source: {max_conns: 2}", "listeners[0].per_source", "not used by udp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, "listeners:\n  - {name: a, listen: '127.0.0.1:80', upstream: '10.0.0.5:80', "+tc.listener+"}\n",
				tc.path, tc.msg)
		})
	}
}

func TestProxyKeys(t *testing.T) {
	cfg, err := parseString(t, `listeners:
  - {name: a, mode: tcp, listen: ':80', upstream: '10.0.0.5:80', proxy_protocol: v2,
     accept_proxy_protocol: [192.0.2.10, '2001:db8::/64', '::ffff:198.51.100.0/120'], proxy_header_timeout: 1s}
  - {name: b, mode: raw, listen: ':81', upstream: '10.0.0.5:81', proxy_protocol: v1}
`)
	if err != nil {
		t.Fatal(err)
	}
	a, b := cfg.Listeners[0], cfg.Listeners[1]
	got := fmt.Sprint(a.ProxyProtocol, a.AcceptProxy, a.ProxyHeaderTimeout, b.ProxyProtocol, b.AcceptProxy, b.ProxyHeaderTimeout)
	if want := "2 [192.0.2.10/32 2001:db8::/64 198.51.100.0/24] 1s 1 [] 0s"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	var out strings.Builder
	cfg.Describe(&out)
	if !strings.Contains(out.String(), "proxy:    send=v2 accept_from=[192.0.2.10/32 2001:db8::/64 198.51.100.0/24] header_timeout=1s") {
		t.Errorf("relay check does not show the PROXY settings:\n%s", out.String())
	}
}

func TestProxyKeyErrors(t *testing.T) {
	tests := []struct {
		name, listener, path, msg string
	}{
		{"ftp does not send", "mode: ftp, ftp: {data_ports: 2000-2001}, proxy_protocol: v2", "listeners[0].proxy_protocol", "FTP servers do not read PROXY headers"},
		{"ftp does not accept", "mode: ftp, ftp: {data_ports: 2000-2001}, accept_proxy_protocol: [127.0.0.1]", "listeners[0].accept_proxy_protocol", "not for ftp listeners"},
		{"unknown version", "mode: tcp, proxy_protocol: v3", "listeners[0].proxy_protocol", `unknown version "v3"`},
		{"bad cidr", "mode: tcp, accept_proxy_protocol: [10.0.0.0/33]", "listeners[0].accept_proxy_protocol[0]", "not an address or a CIDR"},
		{"host bits", "mode: tcp, accept_proxy_protocol: [127.0.0.1, 10.0.0.1/8]", "listeners[0].accept_proxy_protocol[1]", "did you mean 10.0.0.0/8"},
		{"timeout alone", "mode: tcp, proxy_header_timeout: 2s", "listeners[0].proxy_header_timeout", "only with accept_proxy_protocol"},
		{"udp", "mode: udp, proxy_protocol: v1", "listeners[0].proxy_protocol", "not used by udp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, "listeners:\n  - {name: a, listen: '127.0.0.1:80', upstream: '10.0.0.5:80', "+tc.listener+"}\n",
				tc.path, tc.msg)
		})
	}
}

func TestUDPFloodKeys(t *testing.T) {
	cfg, err := parseString(t, "listeners:\n  - {name: u, mode: udp, listen: ':8100', upstream: '10.0.0.6:8100', udp: {session_timeout: 30s, unconfirmed_timeout: 2s, max_sessions: 1000, max_sessions_per_source: 40}}\n")
	if err != nil {
		t.Fatal(err)
	}
	if u := cfg.Listeners[0].UDP; u.UnconfirmedTimeout != 2*time.Second || u.MaxSessionsPerSource != 40 {
		t.Fatalf("UDP = %+v", u)
	}
	for _, tc := range []struct{ udp, path, msg string }{
		{"{session_timeout: 3s, unconfirmed_timeout: 10s}", "listeners[0].udp.unconfirmed_timeout", "longer than session_timeout"},
		{"{max_sessions: 10, max_sessions_per_source: 11}", "listeners[0].udp.max_sessions_per_source", "more than max_sessions"},
		{"{max_sessions_per_source: 0}", "listeners[0].udp.max_sessions_per_source", "at least 1"},
	} {
		wantProblem(t, "listeners:\n  - {name: u, mode: udp, listen: '127.0.0.1:8100', upstream: '10.0.0.6:8100', udp: "+tc.udp+"}\n",
			tc.path, tc.msg)
	}
}

// wantProblem parses yaml, which must be invalid, and fails unless one of
// its problems is at path with msg in its message.
func wantProblem(t *testing.T, yaml, path, msg string) {
	t.Helper()
	es := problemsOf(t, yaml)
	for _, e := range es {
		if e.Path == path && strings.Contains(e.Msg, msg) {
			return
		}
	}
	t.Errorf("want %s: %q among %v", path, msg, es)
}

func TestUDPPerSourceRate(t *testing.T) {
	cfg, err := parseString(t, "listeners:\n  - {name: u, mode: udp, listen: ':8100', upstream: '10.0.0.6:8100', udp: {per_source_rate: 6000/m}}\n")
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Listeners[0].UDP.PerSourceRate; r != 100 {
		t.Fatalf("PerSourceRate = %g, want 100", r)
	}
	wantProblem(t, "listeners:\n  - {name: u, mode: udp, listen: '127.0.0.1:8100', upstream: '10.0.0.6:8100', udp: {per_source_rate: 0}}\n",
		"listeners[0].udp.per_source_rate", "must be above zero")
}
