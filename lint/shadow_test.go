package lint

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/edgerelay/relay/acl"
	"github.com/edgerelay/relay/certs"
	"github.com/edgerelay/relay/config"
)

// aclConfig is a config of web and cms (tcp), rtb (udp) and tunnel (TLS with
// client certificates), reading relay_hba.conf.
func aclConfig(t *testing.T) *config.Config {
	t.Helper()
	const (
		rtb    = "  - {name: rtb, mode: udp, listen: \"127.0.0.1:8100\", upstream: \"10.0.0.6:8100\"}\n"
		tunnel = "  - {name: tunnel, mode: tcp, listen: \"127.0.0.1:10443\", upstream: \"10.0.0.5:10001\"}\n"
	)
	cfg, err := config.Parse(strings.NewReader("acl: {file: relay_hba.conf}\nlisteners:\n"+web+cms+rtb+tunnel), "relay.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// config checks the files; lint reads only whether they are set.
	cfg.Lookup("tunnel").TLS = &certs.ServerFiles{Cert: "venue.crt", Key: "venue.key", ClientCA: "ca.crt"}
	return cfg
}

// aclWarnings returns the warnings Check gives about the ACL file's lines
// (acl.file), for hba read as relay_hba.conf beside aclConfig: a case
// need not name every listener.
func aclWarnings(t *testing.T, hba string) []string {
	t.Helper()
	var got []string
	for _, w := range warnings(t, aclConfig(t), hba) {
		if strings.HasPrefix(w, "acl.file: ") {
			got = append(got, w)
		}
	}
	return got
}

// TestHostBits: a prefix written with host bits set matches its whole
// network, as in PostgreSQL; an admin who wrote 203.0.113.7/24 for one
// address opened a /24 without a word. Each such line is a warning that
// says what it matches and what to write for one address.
func TestHostBits(t *testing.T) {
	const tail = "host all all reject\n"
	tests := []struct {
		name, hba string
		want      []string
	}{
		{"cidr", "host all 203.0.113.7/24 allow\n", []string{
			"acl.file: relay_hba.conf:1: 203.0.113.7/24 has host bits set: it matches all of 203.0.113.0/24 (write 203.0.113.7/32 for one address)"}},
		{"ip and mask", "# venue\nhost all 10.8.0.5 255.255.0.0 allow\n", []string{
			"acl.file: relay_hba.conf:2: 10.8.0.5 255.255.0.0 has host bits set: it matches all of 10.8.0.0/16 (write 10.8.0.5/32 for one address)"}},
		{"ipv6", "host all 2001:db8::7/64 allow\n", []string{
			"acl.file: relay_hba.conf:1: 2001:db8::7/64 has host bits set: it matches all of 2001:db8::/64 (write 2001:db8::7/128 for one address)"}},
		{"ipv4-mapped", "host all ::ffff:10.1.2.3/104 allow\n", []string{
			"acl.file: relay_hba.conf:1: ::ffff:10.1.2.3/104 has host bits set: it matches all of 10.0.0.0/8 (write 10.1.2.3/32 for one address)"}},
		{"a reject line too", "host all 192.168.1.99/24 reject\nhost all 10.0.0.0/8 allow\n", []string{
			"acl.file: relay_hba.conf:1: 192.168.1.99/24 has host bits set: it matches all of 192.168.1.0/24 (write 192.168.1.99/32 for one address)"}},
		{"/32 written", "host all 203.0.113.7/32 allow\n", nil},
		{"/128 written", "host all 2001:db8::7/128 allow\n", nil},
		{"network written", "host all 203.0.113.0/24 allow\nhost all 10.8.0.0 255.255.0.0 allow\n", nil},
		{"mask of ones", "host all 10.8.0.5 255.255.255.255 allow\n", nil},
		{"every address", "host all 0.0.0.0/0 allow\nhost all ::/0 allow\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := aclWarnings(t, tt.hba+tail); !slices.Equal(got, tt.want) {
				t.Errorf("warnings:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestNeverDecides: a line whose every connection an earlier line matches
// first is dead; when its action differs from that line's, the file does
// the opposite of what the line says for all it names, a likely mistake
// (a narrow allow written under a broad reject).
func TestNeverDecides(t *testing.T) {
	const (
		by1      = "never decides: line 1 (%s) matches every connection it matches first"
		allows   = ", and allows what this line would reject"
		rejects  = ", and rejects what this line would allow"
		catchAll = "host all all allow\n"
	)
	w := func(line int, msg string, args ...any) string {
		return fmt.Sprintf("acl.file: relay_hba.conf:%d: ", line) + fmt.Sprintf(msg, args...)
	}
	tests := []struct {
		name, hba string
		want      []string
	}{
		{"catch-all first", "host all all allow\nhost web 10.0.0.0/8 allow\n", []string{
			w(2, by1, "host all all allow")}},
		{"catch-all first, other action", "host all all allow\nhost web 10.0.0.0/8 reject\n", []string{
			w(2, by1+allows, "host all all allow")}},
		{"narrow allow under a broad reject", "host web 10.0.0.0/8 reject\nhost web 10.1.2.3/32 allow\n" + catchAll, []string{
			w(2, by1+rejects, "host web 10.0.0.0/8 reject")}},
		{"duplicate line", "host web 10.0.0.0/8 allow\nhost web 10.0.0.0/8 allow\n", []string{
			w(2, by1, "host web 10.0.0.0/8 allow")}},
		{"listener superset", "host web,cms 10.0.0.0/8 allow\nhost cms 10.1.0.0/16 reject\n", []string{
			w(2, by1+allows, "host web,cms 10.0.0.0/8 allow")}},
		{"all listeners", "host all 10.0.0.0/8 reject\ntcp web,cms 10.1.0.0/16 allow\n" + catchAll, []string{
			w(2, by1+rejects, "host all 10.0.0.0/8 reject")}},
		{"the earliest covering line is named", "host web 10.0.0.0/8 allow\nhost all 10.0.0.0/8 allow\nhost web 10.1.0.0/16 allow\n", []string{
			w(3, by1, "host web 10.0.0.0/8 allow")}},
		{"host covers tcp and udp", "host all 10.0.0.0/8 allow\ntcp web 10.0.0.0/8 reject\nudp rtb 10.0.0.0/8 reject\n", []string{
			w(2, by1+allows, "host all 10.0.0.0/8 allow"), w(3, by1+allows, "host all 10.0.0.0/8 allow")}},
		{"ipv4-mapped written", "host web ::ffff:0.0.0.0/96 reject\nhost web 10.0.0.0/8 allow\n" + catchAll, []string{
			w(2, by1+rejects, "host web 0.0.0.0/0 reject")}},
		{"all covers samehost", "host web all reject\nhost web samehost allow\n" + catchAll, []string{
			w(2, by1+rejects, "host web all reject")}},
		{"the same keyword", "host all samenet allow\nhost web samenet reject\n", []string{
			w(2, by1+allows, "host all samenet allow")}},
		{"host bits and never decides", "host web 10.1.2.3/8 allow\nhost web 10.9.0.0/16 reject\n", []string{
			"acl.file: relay_hba.conf:1: 10.1.2.3/8 has host bits set: it matches all of 10.0.0.0/8 (write 10.1.2.3/32 for one address)",
			w(2, by1+allows, "host web 10.0.0.0/8 allow")}},

		// hostssl lines: host and tcp lines match TLS clients too.
		{"host covers hostssl", "host tunnel 10.0.0.0/8 allow\nhostssl tunnel 10.1.0.0/16 reject cn=boxoffice-3\n", []string{
			w(2, by1+allows, "host tunnel 10.0.0.0/8 allow")}},
		{"tcp covers hostssl", "tcp all all reject\nhostssl tunnel all allow\n" + catchAll, []string{
			w(2, by1+rejects, "tcp all all reject")}},
		{"hostssl without cn covers a cn", "hostssl tunnel all allow\nhostssl tunnel all reject cn=boxoffice-3\n", []string{
			w(2, by1+allows, "hostssl tunnel all allow")}},
		{"a glob covers a name it fits", "hostssl tunnel all allow cn=boxoffice-*\nhostssl tunnel all reject cn=boxoffice-3\n", []string{
			w(2, by1+allows, "hostssl tunnel all allow cn=boxoffice-*")}},
		{"names ignore case", "hostssl tunnel all allow cn=BoxOffice-3\nhostssl tunnel all reject cn=boxoffice-3\n", []string{
			w(2, by1+allows, "hostssl tunnel all allow cn=boxoffice-3")}},
		{"* covers every pattern", "hostssl tunnel all allow cn=*\nhostssl tunnel all reject cn=box*\n", []string{
			w(2, by1+allows, "hostssl tunnel all allow cn=*")}},

		// Lines that do decide.
		{"narrow line first", "host web 10.1.2.3/32 allow\nhost web 10.0.0.0/8 reject\n" + catchAll, nil},
		{"different listeners", "host web 10.0.0.0/8 allow\nhost cms 10.0.0.0/8 reject\n", nil},
		{"fewer listeners first", "host cms 10.0.0.0/8 allow\nhost web,cms 10.1.0.0/16 reject\n", nil},
		{"narrower type first", "tcp all 10.0.0.0/8 allow\nhost all 10.0.0.0/8 reject\nudp all all reject\n" + catchAll, nil},
		{"tcp and udp", "udp all 10.0.0.0/8 reject\ntcp all 10.0.0.0/8 allow\n", nil},
		{"samehost under a prefix", "host all 127.0.0.0/8 reject\nhost all samehost allow\n", nil},
		{"prefix under samenet", "host all samenet allow\nhost all 192.168.1.0/24 reject\n" + catchAll, nil},
		{"samehost under samenet", "host all samenet reject\nhost all samehost allow\n", nil},
		{"hostssl after host on another listener", "host web all allow\nhostssl tunnel all allow cn=boxoffice-*\n", nil},
		{"hostssl does not cover tcp", "hostssl tunnel all reject\ntcp tunnel all allow\n", nil},
		{"a name before its glob", "hostssl tunnel all reject cn=boxoffice-3\nhostssl tunnel all allow cn=boxoffice-*\n", nil},
		{"two names", "hostssl tunnel all reject cn=boxoffice-3\nhostssl tunnel all allow cn=boxoffice-4\n", nil},
		{"glob over glob is not judged", "hostssl tunnel all allow cn=boxoffice-*\nhostssl tunnel all reject cn=boxoffice-1*\n", nil},
		{"cn=* does not cover certificates without a name", "hostssl tunnel all reject cn=*\nhostssl tunnel all allow\n", nil},
		{"ipv4 under ipv6 ::/0", "host web ::/0 reject\nhost web 10.0.0.0/8 allow\n", nil},
		{"ipv6 under 0.0.0.0/0", "host web 0.0.0.0/0 reject\nhost web 2001:db8::/32 allow\n", nil},
		{"beside, not under", "host web 10.0.0.0/9 reject\nhost web 10.128.0.0/9 allow\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := aclWarnings(t, tt.hba); !slices.Equal(got, tt.want) {
				t.Errorf("warnings:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestLineWarningsCapped: a generated blocklist can hold thousands of
// lines under broader ones, and each would be a log line at every reload:
// the first maxLineWarnings of a kind are listed, the rest summed.
func TestLineWarningsCapped(t *testing.T) {
	var hba strings.Builder
	hba.WriteString("host web 10.0.0.0/8 reject\n")
	for i := range maxLineWarnings + 5 {
		fmt.Fprintf(&hba, "host web 10.0.%d.0/24 reject\n", i)
	}
	for i := range maxLineWarnings + 3 {
		fmt.Fprintf(&hba, "host web 192.168.%d.1/24 reject\n", i)
	}
	hba.WriteString("host all all allow\n")
	got := aclWarnings(t, hba.String())
	first := 2 + maxLineWarnings + 5
	want := []string{
		fmt.Sprintf("acl.file: relay_hba.conf:%d: 192.168.0.1/24 has host bits set: it matches all of 192.168.0.0/24 (write 192.168.0.1/32 for one address)", first),
		fmt.Sprintf("acl.file: relay_hba.conf: 3 more lines have host bits set, from line %d on (only the first %d are listed)", first+maxLineWarnings, maxLineWarnings),
		"acl.file: relay_hba.conf:2: never decides: line 1 (host web 10.0.0.0/8 reject) matches every connection it matches first",
		fmt.Sprintf("acl.file: relay_hba.conf: 5 more lines never decide, from line %d on (only the first %d are listed)", 2+maxLineWarnings, maxLineWarnings),
	}
	if len(got) != 2*maxLineWarnings+2 {
		t.Fatalf("%d warnings, want %d:\n%s", len(got), 2*maxLineWarnings+2, strings.Join(got, "\n"))
	}
	for i, at := range []int{0, maxLineWarnings, maxLineWarnings + 1, 2*maxLineWarnings + 1} {
		if got[at] != want[i] {
			t.Errorf("warning %d:\n got %q\nwant %q", at, got[at], want[i])
		}
	}
}

// TestNeverDecidesLargeFile: the search for covering lines looks only at
// earlier lines whose prefix contains the line's, so a 100 000-line
// blocklist costs a few comparisons a line, not one per earlier line (a
// plain pairwise scan makes 5e9 of them: 158 s here, at every reload).
func TestNeverDecidesLargeFile(t *testing.T) {
	list := blocklist(t, 100_000)
	var s shadows
	if found := s.find(list.Rules()); len(found) != 0 {
		t.Fatalf("%d lines never decide, want none; the first: %+v", len(found), found[0])
	}
	if s.compared > 4*len(list.Rules()) {
		t.Errorf("%d rule comparisons for %d lines, want at most 4 a line", s.compared, len(list.Rules()))
	}
}

// BenchmarkCheckLines is both line warnings over a blocklist of n distinct
// prefixes (none under another) ending in two broad lines.
func BenchmarkCheckLines(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			rules := blocklist(b, n).Rules()
			for b.Loop() {
				if ws := checkLines(rules); len(ws) != 0 {
					b.Fatal(ws)
				}
			}
		})
	}
}

// blocklist parses n reject lines, IPv4 /24s and IPv6 /48s, then
// 10.0.0.0/8 and 2001:db8::/32, which cover most of them but come last.
func blocklist(t testing.TB, n int) *acl.List {
	var hba strings.Builder
	for i := range n {
		if i%2 == 0 {
			fmt.Fprintf(&hba, "host all %d.%d.%d.0/24 reject\n", 10+i>>16, i>>8&0xff, i&0xff)
		} else {
			fmt.Fprintf(&hba, "host all 2001:db8:%x::/48 reject\n", i>>1)
		}
	}
	hba.WriteString("host all 10.0.0.0/8 reject\nhost all 2001:db8::/32 reject\n")
	list, err := acl.Parse(strings.NewReader(hba.String()), "big.conf")
	if err != nil {
		t.Fatal(err)
	}
	return list
}
