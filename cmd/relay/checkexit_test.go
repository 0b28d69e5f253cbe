package main

import (
	"strings"
	"testing"
)

// TestCheckUsageErrorsExit2: relay check on a valid config exits 1 only for
// the config ("Exit status 0 when the configuration is valid, 1 when it is
// not", relay(8)); a mistake in how -acl-test is asked is a usage error,
// exit 2 as for an unknown flag, so a script never takes it for a broken
// config. Each still says what was wrong.
func TestCheckUsageErrorsExit2(t *testing.T) {
	cfg := writeConfig(t, "listeners:\n  - {name: web, mode: tcp, listen: \"127.0.0.1:8080\", upstream: \"127.0.0.1:80\"}\n")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"acl-test without listener", []string{"-acl-test", "10.0.0.1"}, "-acl-test needs -listener"},
		{"unknown listener", []string{"-acl-test", "10.0.0.1", "-listener", "nope"}, `-listener "nope" is not defined`},
		{"address not an IP", []string{"-acl-test", "box-office", "-listener", "web"}, "-acl-test"},
		{"unknown proto", []string{"-acl-test", "10.0.0.1", "-listener", "web", "-proto", "sctp"}, `-proto "sctp"`},
		{"cn without tls", []string{"-acl-test", "10.0.0.1", "-listener", "web", "-cn", "bo"}, "-cn"},
		{"cn on admin", []string{"-acl-test", "10.0.0.1", "-listener", "admin", "-cn", "bo"}, "-cn"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCmd(append([]string{"check", "-config", cfg}, tc.args...)...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, tc.want)
			}
		})
	}
	if code, _, stderr := runCmd("check", "-config", cfg, "-acl-test", "10.0.0.1", "-listener", "web"); code != 0 {
		t.Errorf("a good -acl-test: exit %d, %s", code, stderr)
	}
}
