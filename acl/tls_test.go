package acl

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

const tunnelRules = `# TYPE   LISTENER  ADDRESS          ACTION
hostssl  tunnel    all              reject  cn=lost-laptop
hostssl  tunnel    10.0.0.0/8       allow   cn=boxoffice-*
host     tunnel    192.168.1.0/24   allow
hostssl  all       all              allow   cn=Venue-Admin
host     all       all              reject
`

func TestDecideTLS(t *testing.T) {
	l := mustParse(t, tunnelRules)
	tests := []struct {
		name     string
		listener string
		addr     string
		peer     *Peer
		allow    bool
		line     int
	}{
		{"box office by CN", "tunnel", "10.1.2.3", &Peer{CN: "boxoffice-1"}, true, 3},
		{"box office by DNS SAN", "tunnel", "10.1.2.3", &Peer{CN: "x", DNSNames: []string{"boxoffice-2.venue.example"}}, true, 3},
		{"names ignore case", "tunnel", "10.1.2.3", &Peer{CN: "BoxOffice-3"}, true, 3},
		{"lost laptop locked out first", "tunnel", "10.1.2.3", &Peer{CN: "lost-laptop"}, false, 2},
		{"no certificate", "tunnel", "10.1.2.3", nil, false, 6},
		{"address outside the hostssl line", "tunnel", "203.0.113.9", &Peer{CN: "boxoffice-1"}, false, 6},
		{"host line matches TLS clients too", "tunnel", "192.168.1.7", nil, true, 4},
		{"all listeners", "web", "203.0.113.9", &Peer{CN: "venue-admin"}, true, 5},
		{"pattern is not a prefix match", "tunnel", "10.1.2.3", &Peer{CN: "xboxoffice-1"}, false, 6},
		{"mapped IPv4", "tunnel", "::ffff:10.1.2.3", &Peer{CN: "boxoffice-9"}, true, 3},
	}
	ifaces, _ := testOpts.Interfaces()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := netip.MustParseAddr(tc.addr)
			d := l.DecideTLS(tc.listener, addr, tc.peer)
			if d.Allow != tc.allow || d.Rule == nil || d.Rule.Line != tc.line {
				t.Fatalf("DecideTLS = %+v (rule %v), want allow=%v by line %d", d, d.Rule, tc.allow, tc.line)
			}
			if ref := slowDecideTLS(l, ifaces, tc.listener, addr, tc.peer); ref != d.Rule {
				t.Errorf("reference scan picked %v", ref)
			}
		})
	}
	// A plaintext connection never matches a hostssl line.
	if d := l.Decide("tunnel", ProtoTCP, netip.MustParseAddr("10.1.2.3")); d.Allow || d.Rule.Line != 6 {
		t.Errorf("Decide without TLS = %+v, want reject by line 6", d)
	}
	got := l.ExplainTLS("tunnel", netip.MustParseAddr("10.1.2.3"), "lost-laptop")
	if want := "reject by t.conf:2 (hostssl tunnel all reject cn=lost-laptop)"; got != want {
		t.Errorf("ExplainTLS = %q, want %q", got, want)
	}
}

// TestDecideTLSIgnoresZone: the zone of a link-local client (fe80::1%eth0,
// as Go's accept reports it on the listeners that decide after a TLS
// handshake) keeps no hostssl line from matching: Decide ignores zones too,
// and so does a per-source key.
func TestDecideTLSIgnoresZone(t *testing.T) {
	l := mustParse(t, tunnelRules)
	peer := &Peer{CN: "venue-admin"}
	for _, a := range []string{"fe80::1%eth0", "fe80::1%2"} {
		if d := l.DecideTLS("web", netip.MustParseAddr(a), peer); !d.Allow || d.Rule == nil || d.Rule.Line != 5 {
			t.Errorf("DecideTLS(%s) = %+v (rule %v), want allow by line 5 as for fe80::1", a, d, d.Rule)
		}
	}
}

func TestHostSSLParseErrors(t *testing.T) {
	tests := []struct{ line, msg string }{
		{"host tunnel all allow cn=x", "1:23: cn= needs the hostssl type"},
		{"hostssl tunnel all allow cn=a cn=b", "1:31: cn= given twice"},
		{"hostssl tunnel all allow cn=", "1:26: invalid cn pattern"},
		{"hostssl tunnel all allow cn=a/b", "invalid cn pattern"},
		{"hostssl tunnel all allow clientcert=verify-full", `unexpected "clientcert=verify-full" after the action`},
		{"hostssl tunnel all allow cn=a,b", "unexpected comma"},
		{"hostsl tunnel all allow", "expected host, hostssl, tcp or udp"},
	}
	for _, tc := range tests {
		_, err := testOpts.Parse(strings.NewReader(tc.line+"\n"), "t.conf")
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: error %v, want one containing %q", tc.line, err, tc.msg)
		}
	}
}

func TestMatchName(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"boxoffice-1", "boxoffice-1", true},
		{"boxoffice-1", "boxoffice-10", false},
		{"boxoffice-*", "boxoffice-", true},
		{"boxoffice-*", "boxoffice-3.venue.example", true},
		{"*.venue.example", "a.venue.example", true},
		{"*.venue.example", "venue.example", false},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
		{"*", "anything", true},
		{"*", "", false},
	}
	for _, tc := range tests {
		if got := matchName(tc.pattern, tc.name); got != tc.want {
			t.Errorf("matchName(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

// FuzzMatchName holds the backtracking matcher to the recursive definition.
func FuzzMatchName(f *testing.F) {
	for _, s := range [][2]string{{"boxoffice-*", "boxoffice-1"}, {"a*b*c", "aXbYbZc"}, {"**a", "ba"}, {"*x*", "yyy"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if len(pattern) > 40 || len(name) > 60 || !validPattern(pattern) {
			return
		}
		pattern = strings.ToLower(pattern)
		want := name != "" && slowGlob(pattern, strings.ToLower(name))
		if got := matchName(pattern, name); got != want {
			t.Fatalf("matchName(%q, %q) = %v, want %v", pattern, name, got, want)
		}
	})
}
