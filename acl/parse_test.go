package acl

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		want string
	}{
		{"cidr length out of range", "host all all allow\n# ok\nhost    cms-ftp  10.0.0.0/33 allow\n",
			`relay_hba.conf:3:18: invalid CIDR "10.0.0.0/33": prefix length must be 0-32 for IPv4`},
		{"v6 cidr length out of range", "host web ::/129 allow",
			`relay_hba.conf:1:10: invalid CIDR "::/129": prefix length must be 0-128 for IPv6`},
		{"cidr bad ip", "host web 10.0.0/8 allow",
			`relay_hba.conf:1:10: invalid CIDR "10.0.0/8": "10.0.0" is not an IP address`},
		{"cidr bad length", "host web 10.0.0.0/x allow",
			`relay_hba.conf:1:10: invalid CIDR "10.0.0.0/x": expected a prefix length 0-32 after the slash`},
		{"cidr zone", "host web fe80::1%eth0/64 allow",
			`relay_hba.conf:1:10: invalid CIDR "fe80::1%eth0/64": "fe80::1%eth0" is not an IP address`},
		{"unknown type", "hostnossl web all allow",
			`relay_hba.conf:1:1: unknown type "hostnossl", expected host, hostssl, tcp or udp`},
		{"type is case sensitive", "  HOST web all allow",
			`relay_hba.conf:1:3: unknown type "HOST", expected host, hostssl, tcp or udp`},
		{"only type", "host   # nothing else",
			`relay_hba.conf:1:5: line ends early, expected LISTENER (a name, a comma list of names, or all)`},
		{"no address", "host web",
			`relay_hba.conf:1:9: line ends early, expected ADDRESS (a CIDR, an IP and a mask, all, samehost or samenet)`},
		{"no action", "host web 10.0.0.0/8\n",
			`relay_hba.conf:1:20: line ends early, expected ACTION (allow or reject)`},
		{"bad action", "host web 10.0.0.0/8 permit",
			`relay_hba.conf:1:21: invalid action "permit", expected allow or reject`},
		{"mask after cidr", "host web 10.0.0.0/8 255.0.0.0 allow",
			`relay_hba.conf:1:21: unexpected mask "255.0.0.0": a mask follows a bare IP only, not a CIDR or keyword; expected allow or reject`},
		{"extra column", "host web all allow now",
			`relay_hba.conf:1:20: unexpected "now" after the action, expected cn=NAME on a hostssl line or end of line (comments start with #)`},
		{"bare ip without mask", "host web 10.0.0.5 allow",
			`relay_hba.conf:1:10: address "10.0.0.5" has no mask, expected a MASK after it or a CIDR (10.0.0.5/32)`},
		{"bare ip at end", "host web 10.0.0.5",
			`relay_hba.conf:1:18: line ends early, expected a MASK after the bare IP "10.0.0.5" (or write it as a CIDR, 10.0.0.5/32)`},
		{"bad mask", "host web 10.0.0.0 255.0.0 allow",
			`relay_hba.conf:1:19: invalid mask "255.0.0", expected a netmask like 255.255.0.0`},
		{"non contiguous mask", "host web 10.0.0.0 255.0.255.0 allow",
			`relay_hba.conf:1:19: invalid mask "255.0.255.0", expected contiguous one bits like 255.255.240.0`},
		{"mask family", "host web 10.0.0.0 ffff:: allow",
			`relay_hba.conf:1:19: mask "ffff::" is IPv6 but the address "10.0.0.0" is IPv4`},
		{"bad address", "host web example.com allow",
			`relay_hba.conf:1:10: invalid address "example.com", expected a CIDR like 10.0.0.0/8, an IP and a mask, all, samehost or samenet`},
		{"zoned address", "host web fe80::1%eth0 ffff:: allow",
			`relay_hba.conf:1:10: invalid address "fe80::1%eth0": zones are not supported`},
		{"bad listener", "host Web all allow",
			`relay_hba.conf:1:6: invalid listener name "Web", expected lowercase letters, digits and '-'`},
		{"group syntax", "host +admins all allow",
			`relay_hba.conf:1:6: invalid listener name "+admins", expected lowercase letters, digits and '-'`},
		{"bad listener in list", "host web,f_tp all allow",
			`relay_hba.conf:1:10: invalid listener name "f_tp", expected lowercase letters, digits and '-'`},
		{"empty listener in list", "host web,,ftp all allow",
			`relay_hba.conf:1:10: empty listener name before comma, expected a name`},
		{"leading comma joins the previous column", "host ,web all allow",
			`relay_hba.conf:1:6: unexpected comma in TYPE, only LISTENER takes a comma list`},
		{"trailing comma", "host web, all allow",
			`relay_hba.conf:1:11: "all" cannot be combined with listener names`},
		{"trailing comma at end", "host web,",
			`relay_hba.conf:1:10: listener list ends with a comma, expected a name`},
		{"all in a list", "host web,all 10.0.0.0/8 allow",
			`relay_hba.conf:1:10: "all" cannot be combined with listener names`},
		{"comma in address", "host web 10.0.0.0/8,10.1.0.0/16 allow",
			`relay_hba.conf:1:20: unexpected comma in ADDRESS, only LISTENER takes a comma list`},
		{"comma in type", "host,tcp web all allow",
			`relay_hba.conf:1:5: unexpected comma in TYPE, only LISTENER takes a comma list`},
		{"error on a continuation line", "host web \\\n  10.0.0.0/40 \\\n  allow\n",
			`relay_hba.conf:2:3: invalid CIDR "10.0.0.0/40": prefix length must be 0-32 for IPv4`},
		{"continued comment is not a continuation", "host web # \\\n10.0.0.0/8 allow\n",
			`relay_hba.conf:1:9: line ends early, expected ADDRESS (a CIDR, an IP and a mask, all, samehost or samenet)`},
		{"columns count characters", "host web 10.0.0.0/8 allow # ünïcode\nhost wéb all allow\n",
			`relay_hba.conf:2:6: invalid listener name "wéb", expected lowercase letters, digits and '-'`},
		{"tab counts as one column", "host\tweb\t10.0.0.0/8\tallw",
			`relay_hba.conf:1:21: invalid action "allw", expected allow or reject`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := testOpts.Parse(strings.NewReader(tt.file), "relay_hba.conf")
			if err == nil {
				t.Fatalf("parse accepted %q", tt.file)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got: %s\nwant: %s", err, tt.want)
			}
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != "relay_hba.conf" {
				t.Errorf("error %T is not a *ParseError naming the file", err)
			}
		})
	}
}

func TestParseLongLine(t *testing.T) {
	file := "host all all allow\n" + strings.Repeat(" ", maxLine+1) + "\n"
	_, err := Parse(strings.NewReader(file), "big.conf")
	if want := "big.conf:2:1: line longer than 1048576 bytes"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

func TestParseReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	r := io.MultiReader(strings.NewReader("host all all allow\n"), iotest.ErrReader(boom))
	_, err := Parse(r, "t.conf")
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "acl: read t.conf: ") {
		t.Errorf("error = %v, want the read error wrapped", err)
	}
}

func TestParseProto(t *testing.T) {
	for _, p := range []Proto{ProtoAny, ProtoTCP, ProtoUDP} {
		got, err := ParseProto(p.String())
		if err != nil || got != p {
			t.Errorf("ParseProto(%q) = %v, %v", p.String(), got, err)
		}
	}
	if _, err := ParseProto("sctp"); err == nil {
		t.Error("ParseProto(sctp) accepted")
	}
	if got := Proto(9).String(); got != "Proto(9)" {
		t.Errorf("Proto(9).String() = %q", got)
	}
}

// TestParseUndefinedListener: with Options.Listeners, a rule naming a
// listener the config does not define is an error at its line and column;
// without it any valid name is accepted.
func TestParseUndefinedListener(t *testing.T) {
	file := "host all 10.0.0.0/8 allow\nhost web,printr 10.0.0.0/8 allow\n"
	_, err := Options{Listeners: []string{"web", "printer"}}.Parse(strings.NewReader(file), "relay_hba.conf")
	want := `relay_hba.conf:2:10: listener "printr" is not defined in the config (it has printer, web)`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
	if _, err := Parse(strings.NewReader(file), "relay_hba.conf"); err != nil {
		t.Errorf("without Options.Listeners: %v", err)
	}
	if _, err := (Options{Listeners: []string{}}).Parse(strings.NewReader("host all all allow\n"), "x"); err != nil {
		t.Errorf("all needs no defined listener: %v", err)
	}
}
