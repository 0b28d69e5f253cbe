package config

import (
	"strings"
	"testing"
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
			es := problemsOf(t, "listeners:\n  - {name: a, listen: '127.0.0.1:80', upstream: '10.0.0.5:80', "+tc.listener+"}\n")
			for _, e := range es {
				if e.Path == tc.path && strings.Contains(e.Msg, tc.msg) {
					return
				}
			}
			t.Fatalf("want %s: %q among %v", tc.path, tc.msg, es)
		})
	}
}
