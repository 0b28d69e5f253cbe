package acl

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testOpts pins samehost/samenet to a fixed machine: a LAN address, loopback
// and an IPv6 ULA.
var testOpts = Options{Interfaces: func() ([]netip.Prefix, error) {
	return []netip.Prefix{
		netip.MustParsePrefix("192.168.1.10/24"),
		netip.MustParsePrefix("127.0.0.1/8"),
		netip.MustParsePrefix("fd00:1::5/64"),
		netip.MustParsePrefix("::1/128"),
	}, nil
}}

func mustParse(t testing.TB, text string) *List {
	t.Helper()
	l, err := testOpts.Parse(strings.NewReader(text), "t.conf")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return l
}

type query struct {
	listener string
	proto    Proto
	addr     string
	want     string // List.Explain
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		queries []query
	}{
		{"cidr v4", "host web 10.0.0.0/8 allow\n", []query{
			{"web", ProtoTCP, "10.255.255.255", "allow by t.conf:1 (host web 10.0.0.0/8 allow)"},
			{"web", ProtoTCP, "11.0.0.0", "reject: no matching line"},
			{"web", ProtoTCP, "9.255.255.255", "reject: no matching line"},
		}},
		{"host bits are masked", "host web 10.1.2.3/8 reject\n", []query{
			{"web", ProtoUDP, "10.9.9.9", "reject by t.conf:1 (host web 10.0.0.0/8 reject)"},
		}},
		{"ip and dotted mask", "# c\nhost printer 10.8.0.0 255.255.0.0 allow\n", []query{
			{"printer", ProtoTCP, "10.8.200.1", "allow by t.conf:2 (host printer 10.8.0.0/16 allow)"},
			{"printer", ProtoTCP, "10.9.0.1", "reject: no matching line"},
		}},
		{"cidr v6", "host web 2001:db8::/32 allow\n", []query{
			{"web", ProtoTCP, "2001:db8:ffff::1", "allow by t.conf:1 (host web 2001:db8::/32 allow)"},
			{"web", ProtoTCP, "2001:db9::1", "reject: no matching line"},
		}},
		{"ip and v6 mask", "host web 2001:db8:: ffff:ffff:ffff:: allow\n", []query{
			{"web", ProtoTCP, "2001:db8:0:1::1", "allow by t.conf:1 (host web 2001:db8::/48 allow)"},
			{"web", ProtoTCP, "2001:db8:1::1", "reject: no matching line"},
		}},
		{"host route", "host web 127.0.0.2/32 reject\nhost web ::1/128 allow\nhost all all allow\n", []query{
			{"web", ProtoTCP, "127.0.0.2", "reject by t.conf:1 (host web 127.0.0.2/32 reject)"},
			{"web", ProtoTCP, "127.0.0.3", "allow by t.conf:3 (host all all allow)"},
			{"web", ProtoTCP, "::1", "allow by t.conf:2 (host web ::1/128 allow)"},
		}},
		{"all address covers both families", "host web all allow\n", []query{
			{"web", ProtoTCP, "0.0.0.0", "allow by t.conf:1 (host web all allow)"},
			{"web", ProtoTCP, "255.255.255.255", "allow by t.conf:1 (host web all allow)"},
			{"web", ProtoTCP, "::", "allow by t.conf:1 (host web all allow)"},
			{"web", ProtoTCP, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "allow by t.conf:1 (host web all allow)"},
			{"ftp", ProtoTCP, "1.2.3.4", "reject: no matching line"},
		}},
		{"samehost", "host web samehost allow\n", []query{
			{"web", ProtoTCP, "192.168.1.10", "allow by t.conf:1 (host web samehost allow)"},
			{"web", ProtoTCP, "127.0.0.1", "allow by t.conf:1 (host web samehost allow)"},
			{"web", ProtoTCP, "::1", "allow by t.conf:1 (host web samehost allow)"},
			{"web", ProtoTCP, "192.168.1.11", "reject: no matching line"},
			{"web", ProtoTCP, "127.0.0.2", "reject: no matching line"},
		}},
		{"samenet", "host web samenet allow\n", []query{
			{"web", ProtoTCP, "192.168.1.11", "allow by t.conf:1 (host web samenet allow)"},
			{"web", ProtoTCP, "127.9.9.9", "allow by t.conf:1 (host web samenet allow)"},
			{"web", ProtoTCP, "fd00:1::abcd", "allow by t.conf:1 (host web samenet allow)"},
			{"web", ProtoTCP, "192.168.2.1", "reject: no matching line"},
			{"web", ProtoTCP, "fd00:2::1", "reject: no matching line"},
		}},
		{"mapped client matches ipv4 rule", "host web 10.0.0.0/8 allow\n", []query{
			{"web", ProtoTCP, "::ffff:10.1.2.3", "allow by t.conf:1 (host web 10.0.0.0/8 allow)"},
			{"web", ProtoTCP, "::ffff:11.1.2.3", "reject: no matching line"},
		}},
		{"mapped rule is stored as ipv4", "host web ::ffff:10.0.0.0/104 allow\n", []query{
			{"web", ProtoTCP, "10.1.2.3", "allow by t.conf:1 (host web 10.0.0.0/8 allow)"},
			{"web", ProtoTCP, "::ffff:10.1.2.3", "allow by t.conf:1 (host web 10.0.0.0/8 allow)"},
		}},
		{"first match: narrow allow after broad reject loses",
			"host web 10.0.0.0/8 reject\nhost web 10.0.0.5/32 allow\n", []query{
				{"web", ProtoTCP, "10.0.0.5", "reject by t.conf:1 (host web 10.0.0.0/8 reject)"},
			}},
		{"first match: narrow allow before broad reject wins",
			"host web 10.0.0.5/32 allow\nhost web 10.0.0.0/8 reject\nhost web all allow\n", []query{
				{"web", ProtoTCP, "10.0.0.5", "allow by t.conf:1 (host web 10.0.0.5/32 allow)"},
				{"web", ProtoTCP, "10.0.0.6", "reject by t.conf:2 (host web 10.0.0.0/8 reject)"},
				{"web", ProtoTCP, "11.0.0.6", "allow by t.conf:3 (host web all allow)"},
			}},
		{"duplicate prefixes: the first line decides",
			"host web 10.0.0.0/8 reject\nhost web 10.0.0.0/8 allow\n", []query{
				{"web", ProtoTCP, "10.0.0.1", "reject by t.conf:1 (host web 10.0.0.0/8 reject)"},
			}},
		{"protocol filtering", "udp rtb 10.0.0.0/8 allow\ntcp rtb 10.0.0.0/8 reject\nhost rtb all allow\n", []query{
			{"rtb", ProtoUDP, "10.0.0.1", "allow by t.conf:1 (udp rtb 10.0.0.0/8 allow)"},
			{"rtb", ProtoTCP, "10.0.0.1", "reject by t.conf:2 (tcp rtb 10.0.0.0/8 reject)"},
			{"rtb", ProtoAny, "10.0.0.1", "allow by t.conf:3 (host rtb all allow)"},
			{"rtb", Proto(7), "10.0.0.1", "reject: no matching line"},
		}},
		{"all listener merged with named ones in file order",
			"host all 10.0.0.0/8 reject\nhost web 10.1.0.0/16 allow\nhost all 192.168.0.0/16 allow\nhost web all reject\nhost all all allow\n",
			[]query{
				{"web", ProtoTCP, "10.1.2.3", "reject by t.conf:1 (host all 10.0.0.0/8 reject)"},
				{"web", ProtoTCP, "192.168.5.5", "allow by t.conf:3 (host all 192.168.0.0/16 allow)"},
				{"web", ProtoTCP, "8.8.8.8", "reject by t.conf:4 (host web all reject)"},
				{"ftp", ProtoTCP, "8.8.8.8", "allow by t.conf:5 (host all all allow)"},
				{"ftp", ProtoTCP, "10.1.2.3", "reject by t.conf:1 (host all 10.0.0.0/8 reject)"},
			}},
		{"listener list", "host cms-ftp,rtb 192.168.1.0/24 allow\n", []query{
			{"cms-ftp", ProtoTCP, "192.168.1.1", "allow by t.conf:1 (host cms-ftp,rtb 192.168.1.0/24 allow)"},
			{"rtb", ProtoUDP, "192.168.1.1", "allow by t.conf:1 (host cms-ftp,rtb 192.168.1.0/24 allow)"},
			{"web", ProtoTCP, "192.168.1.1", "reject: no matching line"},
		}},
		{"continuation, comments and blank lines",
			"# header\n\n   \t\nhost web,\\\n   ftp \\  # why\n 10.0.0.0/8 \\\n\tallow # trailing\n\r\nhost all all reject\r\n",
			[]query{
				{"ftp", ProtoTCP, "10.0.0.1", "allow by t.conf:4 (host web,ftp 10.0.0.0/8 allow)"},
				{"ftp", ProtoTCP, "11.0.0.1", "reject by t.conf:9 (host all all reject)"},
			}},
		{"empty file rejects everything", "# nothing\n", []query{
			{"web", ProtoTCP, "10.0.0.1", "reject: no matching line"},
		}},
		{"invalid client address", "host all all allow\n", []query{
			{"web", ProtoTCP, "", "reject: no matching line"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := mustParse(t, tt.file)
			for _, q := range tt.queries {
				var addr netip.Addr
				if q.addr != "" {
					addr = netip.MustParseAddr(q.addr)
				}
				if got := l.Explain(q.listener, q.proto, addr); got != q.want {
					t.Errorf("Explain(%q, %v, %s) = %q, want %q", q.listener, q.proto, q.addr, got, q.want)
				}
				d := l.Decide(q.listener, q.proto, addr)
				if d.Allow != strings.HasPrefix(q.want, "allow") {
					t.Errorf("Decide(%q, %v, %s).Allow = %v, want %v", q.listener, q.proto, q.addr, d.Allow, !d.Allow)
				}
			}
		})
	}
}

func TestNilListAllowsAll(t *testing.T) {
	var l *List
	d := l.Decide("web", ProtoTCP, netip.MustParseAddr("10.0.0.1"))
	if !d.Allow || d.Rule != nil {
		t.Errorf("nil list decided %+v, want allow with no rule", d)
	}
	if got := l.Explain("web", ProtoTCP, netip.MustParseAddr("10.0.0.1")); got != "allow: no ACL loaded" {
		t.Errorf("Explain = %q", got)
	}
}

func TestListeners(t *testing.T) {
	l := mustParse(t, "host web,ftp all allow\nudp rtb,web all allow\nhost all all reject\n")
	want := []string{"ftp", "rtb", "web"}
	if got := l.Listeners(); !slices.Equal(got, want) {
		t.Errorf("Listeners() = %q, want %q", got, want)
	}
}

func TestRuleFields(t *testing.T) {
	l := mustParse(t, "\n\ntcp web,web,ftp 10.8.0.0 255.255.0.0 reject\n")
	r := l.Rules()[0]
	want := Rule{
		File: "t.conf", Line: 3, Proto: ProtoTCP, Listeners: []string{"web", "ftp"},
		Addr: Address{Kind: AddrPrefix, Prefix: netip.MustParsePrefix("10.8.0.0/16")},
	}
	if !sameRule(r, want) || r.File != want.File || r.Line != want.Line {
		t.Errorf("rule = %+v, want %+v", r, want)
	}
}

func TestLoadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay_hba.conf")
	if err := os.WriteFile(path, []byte("host web 127.0.0.2/32 reject\nhost web 127.0.0.0/8 allow\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := LoadFile(path, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	got := l.Explain("web", ProtoTCP, netip.MustParseAddr("127.0.0.2"))
	if want := "reject by " + path + ":1 (host web 127.0.0.2/32 reject)"; got != want {
		t.Errorf("Explain = %q, want %q", got, want)
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing"), testOpts); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadFile(missing) error = %v, want ErrNotExist", err)
	}
	// A file that cannot be read is named once ("read /x: read /x: is a
	// directory" was the text before).
	dir := t.TempDir()
	_, err = LoadFile(dir, testOpts)
	if err == nil || strings.Count(err.Error(), dir) != 1 || strings.Count(err.Error(), "is a directory") != 1 {
		t.Errorf("LoadFile(a directory) error = %v, want the path and the cause once each", err)
	}
}

func TestInterfacesReadOnlyWhenUsed(t *testing.T) {
	calls := 0
	opts := Options{Interfaces: func() ([]netip.Prefix, error) {
		calls++
		return nil, errors.New("no netlink")
	}}
	if _, err := opts.Parse(strings.NewReader("host all 10.0.0.0/8 allow\n"), "t.conf"); err != nil || calls != 0 {
		t.Fatalf("plain file: err %v, %d interface reads, want none", err, calls)
	}
	_, err := opts.Parse(strings.NewReader("host all samenet allow\nhost all samehost allow\n"), "t.conf")
	if want := "t.conf:1:10: samenet: read interface addresses: no netlink"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
	if calls != 1 {
		t.Errorf("%d interface reads, want 1", calls)
	}
}

func TestSystemInterfaces(t *testing.T) {
	prefixes, err := systemInterfaces()
	if err != nil {
		t.Skipf("no interface list here: %v", err)
	}
	for _, p := range prefixes {
		if !p.IsValid() {
			t.Errorf("invalid prefix %v", p)
		}
		if p.Addr().IsLoopback() && p.Addr().Is4() && p.Bits() != 8 {
			t.Logf("loopback %v", p)
		}
	}
	l, err := Parse(strings.NewReader("host all samehost allow\n"), "t.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range prefixes {
		if !l.Decide("web", ProtoTCP, p.Addr()).Allow {
			t.Errorf("own address %v not matched by samehost", p.Addr())
		}
	}
}

// The example file shipped for the CAYIN layout parses and means what its
// comments say.
func TestExampleFile(t *testing.T) {
	l, err := LoadFile("testdata/cayin_hba.conf", testOpts)
	if err != nil {
		t.Fatal(err)
	}
	wantNames := []string{"cms-command", "cms-ftp", "cms-http", "rtb", "ticket-printer"}
	if got := l.Listeners(); !slices.Equal(got, wantNames) {
		t.Errorf("Listeners() = %q, want %q", got, wantNames)
	}
	for _, q := range []query{
		{"cms-http", ProtoTCP, "192.168.1.50", "allow by testdata/cayin_hba.conf:6 (host cms-http,cms-command 192.168.1.0/24 allow)"},
		{"cms-command", ProtoTCP, "10.8.3.4", "allow by testdata/cayin_hba.conf:7 (host cms-http,cms-command 10.8.0.0/16 allow)"},
		{"cms-http", ProtoTCP, "fd00:1::9", "allow by testdata/cayin_hba.conf:8 (host cms-http fd00:1::/64 allow)"},
		{"cms-ftp", ProtoTCP, "192.168.20.66", "reject by testdata/cayin_hba.conf:12 (host cms-ftp 192.168.20.66/32 reject)"},
		{"cms-ftp", ProtoTCP, "::ffff:192.168.20.7", "allow by testdata/cayin_hba.conf:13 (host cms-ftp 192.168.20.0/24 allow)"},
		{"rtb", ProtoUDP, "192.168.20.7", "allow by testdata/cayin_hba.conf:16 (udp rtb 192.168.20.0/24 allow)"},
		{"rtb", ProtoUDP, "192.168.1.50", "reject by testdata/cayin_hba.conf:25 (host all all reject)"},
		{"ticket-printer", ProtoTCP, "192.168.30.15", "allow by testdata/cayin_hba.conf:19 (tcp ticket-printer 192.168.30.0/28 allow)"},
		{"ticket-printer", ProtoTCP, "192.168.30.16", "reject by testdata/cayin_hba.conf:25 (host all all reject)"},
		{"ticket-printer", ProtoTCP, "127.0.0.1", "allow by testdata/cayin_hba.conf:23 (host all samehost allow)"},
	} {
		if got := l.Explain(q.listener, q.proto, netip.MustParseAddr(q.addr)); got != q.want {
			t.Errorf("Explain(%s, %v, %s) = %q, want %q", q.listener, q.proto, q.addr, got, q.want)
		}
	}
}
