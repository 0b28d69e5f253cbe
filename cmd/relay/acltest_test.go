package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestACLTestProtoIsTheListeners: -acl-test on a udp listener asks about a
// UDP source without -proto. It asked about TCP (the flag's default), so a
// tcp line decided for a listener that only ever sees datagrams: relay check
// said "reject" for a source the relay forwards. A -proto that contradicts
// the listener is a usage error (exit 2), and so is a flag of -acl-test or
// -resolve given without it, which was ignored in silence.
func TestACLTestProtoIsTheListeners(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(cfg, []byte("acl: {file: relay_hba.conf}\nlisteners:\n"+
		"  - {name: rtb, mode: udp, listen: \"127.0.0.1:8100\", upstream: \"127.0.0.1:8101\"}\n"+
		"  - {name: web, mode: tcp, listen: \"127.0.0.1:8080\", upstream: \"127.0.0.1:80\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "relay_hba.conf"), []byte("tcp all all reject\nhost all all allow\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		output string // substring of stdout (exit 0) or stderr
	}{
		{"udp listener", []string{"-acl-test", "10.0.0.1", "-listener", "rtb"}, 0, "allow by " + filepath.Join(dir, "relay_hba.conf") + ":2"},
		{"udp listener, -proto udp", []string{"-acl-test", "10.0.0.1", "-listener", "rtb", "-proto", "udp"}, 0, "allow by"},
		{"tcp listener", []string{"-acl-test", "10.0.0.1", "-listener", "web"}, 0, "reject by " + filepath.Join(dir, "relay_hba.conf") + ":1"},
		{"-proto tcp on a udp listener", []string{"-acl-test", "10.0.0.1", "-listener", "rtb", "-proto", "tcp"}, 2, `listener "rtb" takes udp`},
		{"-proto udp on the admin endpoint", []string{"-acl-test", "10.0.0.1", "-listener", "admin", "-proto", "udp"}, 2, `listener "admin" takes tcp`},
		{"-listener without -acl-test", []string{"-listener", "web"}, 2, "-listener is for -acl-test ADDR"},
		{"-proto without -acl-test", []string{"-proto", "udp"}, 2, "-proto is for -acl-test ADDR"},
		{"-cn without -acl-test", []string{"-cn", "boxoffice-1"}, 2, "-cn is for -acl-test ADDR"},
		{"-nameserver without -resolve", []string{"-nameserver", "127.0.0.1:53"}, 2, "-nameserver is for -resolve"},
		{"-acl-test with -resolve", []string{"-resolve", "-acl-test", "10.0.0.1", "-listener", "web"}, 2, "separate checks"},
		{"-nameserver a name", []string{"-resolve", "-nameserver", "ns.example:53"}, 2, `-nameserver "ns.example:53": want the server's ip:port`},
		{"-nameserver without a port", []string{"-resolve", "-nameserver", "127.0.0.1"}, 2, `-nameserver "127.0.0.1": want the server's ip:port`},
		{"address not an IP", []string{"-acl-test", "box-office", "-listener", "web"}, 2, `-acl-test "box-office" is not an IP address`},
		{"a CIDR", []string{"-acl-test", "10.0.0.0/24", "-listener", "web"}, 2, `-acl-test "10.0.0.0/24" is not an IP address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(append([]string{"check", "-config", cfg}, tc.args...)...)
			out := stderr
			if tc.code == 0 {
				out = stdout
			}
			if code != tc.code || !strings.Contains(out, tc.output) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d and %q", code, stdout, stderr, tc.code, tc.output)
			}
		})
	}
}
