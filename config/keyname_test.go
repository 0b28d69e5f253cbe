package config

import (
	"strings"
	"testing"
)

// TestKeyThatIsNoName: a mapping key that is null (~, null), a list or a
// mapping is refused at its line as one problem. A null key at the top was
// dropped in silence, and a list or mapping as a key gave the YAML library's
// "unmarshal errors:" over several lines, naming no key.
func TestKeyThatIsNoName(t *testing.T) {
	for _, tc := range []struct{ yaml, where, path, msg string }{
		{"~: 1\nlisteners:" + one, "t.yaml:1", "", `a key must be a name (like listeners:), this one is nothing ("~" is null in YAML)`},
		{"null: 1\nlisteners:" + one, "t.yaml:1", "", `this one is nothing ("null" is null in YAML)`},
		{"[a, b]: 1\nlisteners:" + one, "t.yaml:1", "", "this one is a list"},
		{"? {a: 1}\n: 2\nlisteners:" + one, "t.yaml:1", "", "this one is a mapping"},
		{"listeners:\n  - {name: a, mode: tcp, listen: '127.0.0.1:7001', upstream: '127.0.0.1:7002', ~: 1}\n", "t.yaml:2", "listeners[0]", "this one is nothing"},
	} {
		es := problemsOf(t, tc.yaml)
		if len(es) != 1 || es[0].Where != tc.where || es[0].Path != tc.path || !strings.Contains(es[0].Msg, tc.msg) {
			t.Errorf("%q: problems %q; want one at %s %s: %s", tc.yaml, es, tc.where, tc.path, tc.msg)
		}
	}
}
