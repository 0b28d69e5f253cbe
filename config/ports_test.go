package config

import (
	"strings"
	"testing"
)

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in          string
		first, last uint16
		err         string // substring; empty: no error
	}{
		{in: "80", first: 80, last: 80},
		{in: "0", first: 0, last: 0},
		{in: "65535", first: 65535, last: 65535},
		{in: "20000-20001", first: 20000, last: 20001},
		{in: "8100-8226", first: 8100, last: 8226},
		{in: "1-65535", first: 1, last: 65535},
		{in: "80-80", first: 80, last: 80},
		{in: "", err: "missing port"},
		{in: "-", err: "missing port"},
		{in: "80-", err: "missing port"},
		{in: "-80", err: "missing port"},
		{in: "65536", err: "above 65535"},
		{in: "99999", err: "above 65535"},
		{in: "123456", err: "not a number"},
		{in: "080", err: "leading zero"},
		{in: "+80", err: "not a number"},
		{in: " 80", err: "not a number"},
		{in: "8o", err: "not a number"},
		{in: "20010-20001", err: "reversed"},
		{in: "0-10", err: "port 0 cannot be part of a range"},
		{in: "1-2-3", err: "not a number"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			first, last, err := ParsePortRange(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParsePortRange(%q) error = %v, want one containing %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil || first != tt.first || last != tt.last {
				t.Fatalf("ParsePortRange(%q) = %d, %d, %v; want %d, %d", tt.in, first, last, err, tt.first, tt.last)
			}
		})
	}
}

func TestParseHostPorts(t *testing.T) {
	tests := []struct {
		in   string
		want HostPorts
		err  string
	}{
		{in: "0.0.0.0:80", want: HostPorts{"0.0.0.0", 80, 80}},
		{in: "10.0.0.5:20000-20001", want: HostPorts{"10.0.0.5", 20000, 20001}},
		{in: ":80", want: HostPorts{"", 80, 80}},
		{in: "[::1]:80", want: HostPorts{"::1", 80, 80}},
		{in: "[::]:8100-8226", want: HostPorts{"::", 8100, 8226}},
		{in: "[fe80::1%eth0]:21", want: HostPorts{"fe80::1%eth0", 21, 21}},
		{in: "cms.example:443", want: HostPorts{"cms.example", 443, 443}},
		{in: "10.0.0.5", err: "no port"},
		{in: "::1:80", err: "must be in brackets"},
		{in: "[::1:80", err: "[addr]:port"},
		{in: "[::1]80", err: "[addr]:port"},
		{in: "[10.0.0.1]:80", err: "only for IPv6"},
		{in: "[]:80", err: "only for IPv6"},
		{in: "10.0.0.5:", err: "missing port"},
		{in: "10.0.0.5:http", err: "not a number"},
		{in: "10.0.0.5:90-80", err: "reversed"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseHostPorts(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseHostPorts(%q) error = %v, want one containing %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseHostPorts(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if s := got.String(); s != tt.in {
				t.Errorf("String() = %q, want %q back", s, tt.in)
			}
		})
	}
}

func TestHostPortsAt(t *testing.T) {
	hp := HostPorts{Host: "::", First: 8100, Last: 8226}
	if hp.Len() != 127 {
		t.Errorf("Len() = %d, want 127", hp.Len())
	}
	if got := hp.At(126); got != "[::]:8226" {
		t.Errorf("At(126) = %q, want [::]:8226", got)
	}
}

func TestIsDNSName(t *testing.T) {
	for name, want := range map[string]bool{
		"cms":           true,
		"cms.example":   true,
		"cms-1.example": true,
		"example.com.":  true,
		"10.0.0.300":    false,
		"bad_host":      false,
		"-cms":          false,
		"cms-":          false,
		"a..b":          false,
		"":              false,
		"ümlaut":        false,
	} {
		if got := isDNSName(name); got != want {
			t.Errorf("isDNSName(%q) = %v, want %v", name, got, want)
		}
	}
}

// FuzzParsePortRange checks that whatever parses formats back to a spelling
// that parses to the same range, and that a value written canonically comes
// back unchanged.
func FuzzParsePortRange(f *testing.F) {
	for _, s := range []string{"80", "0", "20000-20001", "65535", "1-65535", "80-80", "080", "20010-20001", "-", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		first, last, err := ParsePortRange(s)
		if err != nil {
			return
		}
		if first > last {
			t.Fatalf("ParsePortRange(%q) = %d > %d", s, first, last)
		}
		out := FormatPortRange(first, last)
		f2, l2, err := ParsePortRange(out)
		if err != nil || f2 != first || l2 != last {
			t.Fatalf("ParsePortRange(FormatPortRange(%d, %d) = %q) = %d, %d, %v", first, last, out, f2, l2, err)
		}
		if first != last && out != s {
			t.Fatalf("FormatPortRange(ParsePortRange(%q)) = %q", s, out)
		}
	})
}

// FuzzParseHostPorts checks the same round trip for whole addresses.
func FuzzParseHostPorts(f *testing.F) {
	for _, s := range []string{"0.0.0.0:80", "[::]:8100-8226", ":21", "[fe80::1%eth0]:21", "cms:443", "::1:80", "[1.2.3.4]:80", "[a:]b]:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hp, err := ParseHostPorts(s)
		if err != nil {
			return
		}
		out := hp.String()
		back, err := ParseHostPorts(out)
		if err != nil || back != hp {
			t.Fatalf("ParseHostPorts(%q) = %+v; String %q parses to %+v, %v", s, hp, out, back, err)
		}
		if hp.First != hp.Last && out != s {
			t.Fatalf("ParseHostPorts(%q).String() = %q", s, out)
		}
	})
}
