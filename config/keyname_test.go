package config

import (
	"strings"
	"testing"
)

// TestKeyThatIsNoName: a mapping key that is null (~, null), a list or a
// mapping is refused at its line as one problem. A null key at the top was
// dropped in silence, and a list or mapping as a key gave the YAML library's
// "unmarshal errors:" over several lines, naming no key. A key path written
// as one key (log.level: debug, as the README names keys) says to nest it;
// it said "log.level: unknown key (known here: acl, admin, ...)", which
// read as if log.level were not a key.
func TestKeyThatIsNoName(t *testing.T) {
	for _, tc := range []struct{ yaml, where, path, msg string }{
		{"~: 1\nlisteners:" + one, "t.yaml:1", "", `a key must be a name (like listeners:), this one is nothing ("~" is null in YAML)`},
		{"null: 1\nlisteners:" + one, "t.yaml:1", "", `this one is nothing ("null" is null in YAML)`},
		{"[a, b]: 1\nlisteners:" + one, "t.yaml:1", "", "this one is a list"},
		{"? {a: 1}\n: 2\nlisteners:" + one, "t.yaml:1", "", "this one is a mapping"},
		{"listeners:\n  - {name: a, mode: tcp, listen: '127.0.0.1:7001', upstream: '127.0.0.1:7002', ~: 1}\n", "t.yaml:2", "listeners[0]", "this one is nothing"},
		{"log.level: debug\nlisteners:" + one, "t.yaml:1", "", `key "log.level" has a dot: a file nests its keys, so write "log:" and under it, indented, "level:"`},
		{"listeners:\n  - {name: a, mode: tcp, listen: '127.0.0.1:7001', upstream: '127.0.0.1:7002', tls.cert: x.crt}\n", "t.yaml:2", "listeners[0]", `key "tls.cert" has a dot`},
	} {
		es := problemsOf(t, tc.yaml)
		if len(es) != 1 || es[0].Where != tc.where || es[0].Path != tc.path || !strings.Contains(es[0].Msg, tc.msg) {
			t.Errorf("%q: problems %q; want one at %s %s: %s", tc.yaml, es, tc.where, tc.path, tc.msg)
		}
	}
}
