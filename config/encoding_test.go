package config

import "testing"

// TestNotUTF8SaysSo: a line saved in Latin-1 or Windows-1252 (an accented
// venue name in a comment) names its line and says to save the file as
// UTF-8; it said "YAML: invalid trailing UTF-8 octet", which a venue
// admin cannot act on.
func TestNotUTF8SaysSo(t *testing.T) {
	const msg = ": YAML: this line is not UTF-8 text (saved as Latin-1 or Windows-1252?): save the file as UTF-8"
	for _, tc := range []struct{ yaml, want string }{
		{"listeners:\n  # Th\xe9\xe2tre entrance\n  - {name: a, mode: tcp, listen: '127.0.0.1:7001', upstream: '127.0.0.1:7002'}\n", "t.yaml:2" + msg},
		{"log:\n  level: info\n  # caf\xe9\nlisteners: []\n", "t.yaml:3" + msg},
		{"log:\n  level: \xff\n", "t.yaml:2" + msg},
	} {
		if _, err := parseString(t, tc.yaml); err == nil || err.Error() != tc.want {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}
