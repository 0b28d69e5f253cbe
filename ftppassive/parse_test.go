package ftppassive

import (
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParse227(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // "" means an error is expected
	}{
		{"parens", "227 Entering Passive Mode (192,168,1,2,195,80).\r\n", "192.168.1.2:50000"},
		{"no parens", "227 Entering Passive Mode 10,0,0,5,78,33\r\n", "10.0.0.5:20001"},
		{"equals form", "227 =127,0,0,1,4,1", "127.0.0.1:1025"},
		{"spaces inside", "227 ok (10, 1, 2, 3, 0, 21)", "10.1.2.3:21"},
		{"digits in text first", "227 Mode 2 go (1,2,3,4,0,1)", "1.2.3.4:1"},
		{"multi-line last line", "227 (127,0,0,77,117,48)", "127.0.0.77:30000"},
		{"leading zeros", "227 (010,000,000,001,000,099)", "10.0.0.1:99"},
		{"octet too big", "227 (256,0,0,1,4,1)", ""},
		{"port byte too big", "227 (1,2,3,4,256,1)", ""},
		{"port zero", "227 (1,2,3,4,0,0)", ""},
		{"five numbers", "227 (1,2,3,4,5)", ""},
		{"seven numbers", "227 (1,2,3,4,5,6,7)", ""},
		{"negative", "227 (1,2,3,4,-5,6)", ""},
		{"empty", "", ""},
		{"code only", "227", ""},
		{"huge number", "227 (1,2,3,4,99999999999999999999,1)", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parse227(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("parse227(%q) = %v, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != netip.MustParseAddrPort(tt.want) {
				t.Fatalf("parse227(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParse229(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want uint16 // 0 means an error is expected
	}{
		{"standard", "229 Entering Extended Passive Mode (|||6446|)\r\n", 6446},
		{"other delimiter", "229 ok (!!!1025!)", 1025},
		{"no parens", "229 Entering Extended Passive Mode |||21|", 21},
		{"max port", "229 (|||65535|)", 65535},
		{"port too big", "229 (|||65536|)", 0},
		{"port zero", "229 (|||0|)", 0},
		{"missing port", "229 (||||)", 0},
		{"two delimiters", "229 (||6446|)", 0},
		{"unterminated", "229 (|||6446", 0},
		{"digit delimiter", "229 (1111112)", 0},
		{"empty", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parse229(tt.in)
			if tt.want == 0 {
				if err == nil {
					t.Fatalf("parse229(%q) = %d, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parse229(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParsePORTAndEPRT(t *testing.T) {
	tests := []struct {
		name    string
		verb    string
		arg     string
		want    string
		wantErr error
	}{
		{"port", "PORT", "127,0,0,1,195,80", "127.0.0.1:50000", nil},
		{"port spaces", "PORT", " 127,0,0,1,4,1 ", "127.0.0.1:1025", nil},
		{"port five", "PORT", "127,0,0,1,4", "", errBadHostPort},
		{"port octet", "PORT", "300,0,0,1,4,1", "", errBadHostPort},
		{"port zero", "PORT", "127,0,0,1,0,0", "", errBadHostPort},
		{"port trailing garbage", "PORT", "127,0,0,1,4,1x", "", errBadHostPort},
		{"eprt v4", "EPRT", "|1|132.235.1.2|6275|", "132.235.1.2:6275", nil},
		{"eprt v6", "EPRT", "|2|1080::8:800:200C:417A|5282|", "[1080::8:800:200c:417a]:5282", nil},
		{"eprt v6 loopback", "EPRT", "|2|::1|40000|", "[::1]:40000", nil},
		{"eprt other delimiter", "EPRT", "!1!10.0.0.1!2000!", "10.0.0.1:2000", nil},
		{"eprt proto 3", "EPRT", "|3|10.0.0.1|2000|", "", errEPRTProto},
		{"eprt v4 as proto 2", "EPRT", "|2|10.0.0.1|2000|", "", errBadEPRT},
		{"eprt v6 as proto 1", "EPRT", "|1|::1|2000|", "", errBadEPRT},
		{"eprt zone", "EPRT", "|2|fe80::1%eth0|2000|", "", errBadEPRT},
		{"eprt port big", "EPRT", "|1|10.0.0.1|70000|", "", errBadEPRT},
		{"eprt port sign", "EPRT", "|1|10.0.0.1|+200|", "", errBadEPRT},
		{"eprt port zero", "EPRT", "|1|10.0.0.1|0|", "", errBadEPRT},
		{"eprt extra field", "EPRT", "|1|10.0.0.1|2000|x|", "", errBadEPRT},
		{"eprt unterminated", "EPRT", "|1|10.0.0.1|2000", "", errBadEPRT},
		{"eprt empty", "EPRT", "", "", errBadEPRT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parse := parsePORT
			if tt.verb == "EPRT" {
				parse = parseEPRT
			}
			got, err := parse(tt.arg)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("%s %q = %v, %v; want error %v", tt.verb, tt.arg, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != netip.MustParseAddrPort(tt.want) {
				t.Fatalf("%s %q = %v, %v; want %s", tt.verb, tt.arg, got, err, tt.want)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	ap := netip.MustParseAddrPort("203.0.113.9:20002")
	tests := []struct{ got, want string }{
		{format227(ap), "227 Entering Passive Mode (203,0,113,9,78,34).\r\n"},
		{format227(netip.MustParseAddrPort("[::ffff:10.1.2.3]:21")), "227 Entering Passive Mode (10,1,2,3,0,21).\r\n"},
		{format229(20002), "229 Entering Extended Passive Mode (|||20002|)\r\n"},
		{formatPORT(ap), "PORT 203,0,113,9,78,34\r\n"},
		{formatEPRT(ap), "EPRT |1|203.0.113.9|20002|\r\n"},
		{formatEPRT(netip.MustParseAddrPort("[2001:db8::7]:1024")), "EPRT |2|2001:db8::7|1024|\r\n"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		name string
		in   string
		verb string
		arg  string
	}{
		{"plain", "PASV\r\n", "PASV", ""},
		{"lower case", "epsv all\r\n", "EPSV", "all"},
		{"bare LF", "PORT 1,2,3,4,5,6\n", "PORT", "1,2,3,4,5,6"},
		{"telnet abort", "\xff\xf4\xff\xf2ABOR\r\n", "ABOR", ""},
		{"telnet negotiation", "\xff\xfb\x01NOOP\r\n", "NOOP", ""},
		{"escaped IAC in argument", "RETR a\xff\xffb\r\n", "RETR", "a\xffb"},
		{"leading spaces", "  TYPE I\r\n", "TYPE", "I"},
		{"path with spaces", "STOR my file.txt\r\n", "STOR", "my file.txt"},
		{"empty", "\r\n", "", ""},
		{"lone IAC at end", "NOOP\xff", "NOOP", ""},
		{"subnegotiation skipped whole", "\xff\xfaX\xff\xf0PORT 1,2,3,4,5,6\r\n", "PORT", "1,2,3,4,5,6"},
		{"unterminated subnegotiation", "\xff\xfaPORT 1,2,3,4,5,6\r\n", "", ""},
		{"tab separator", "PORT\t1,2,3,4,5,6\r\n", "PORT", "1,2,3,4,5,6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseCommand([]byte(tt.in))
			if got.verb != tt.verb || got.arg != tt.arg {
				t.Fatalf("parseCommand(%q) = %q %q; want %q %q", tt.in, got.verb, got.arg, tt.verb, tt.arg)
			}
		})
	}
}

func TestReplyFramer(t *testing.T) {
	type step struct {
		line  string
		code  int
		first bool
		done  bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"single", []step{{"200 ok\r\n", 200, true, true}}},
		{"code alone", []step{{"200\r\n", 200, true, true}}},
		{"multi", []step{
			{"227-first\r\n", 227, true, false},
			{" (1,2,3,4,5,6)\r\n", 227, false, false},
			{"227 done\r\n", 227, false, true},
		}},
		{"multi with inner codes", []step{
			{"211-Features:\r\n", 211, true, false},
			{"211-not the end\r\n", 211, false, false},
			{"200 other code is text\r\n", 211, false, false},
			{"211 End\r\n", 211, false, true},
			{"226 next\r\n", 226, true, true},
		}},
		{"garbage between replies", []step{
			{"hello\r\n", 0, true, true},
			{"150 go\r\n", 150, true, true},
		}},
		{"out of range code", []step{{"999 x\r\n", 0, true, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f replyFramer
			for _, s := range tt.steps {
				code, first, done := f.line([]byte(s.line))
				if code != s.code || first != s.first || done != s.done {
					t.Fatalf("line %q: got %d %v %v; want %d %v %v", s.line, code, first, done, s.code, s.first, s.done)
				}
			}
		})
	}
}

func TestLineReader(t *testing.T) {
	t.Run("one byte at a time", func(t *testing.T) {
		in := "USER a\r\nPASS b\nNOOP\r\ntail"
		lr := newLineReader(iotest.OneByteReader(strings.NewReader(in)), 64)
		var got []string
		for {
			l, err := lr.readLine()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(l))
		}
		want := []string{"USER a\r\n", "PASS b\n", "NOOP\r\n", "tail"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
	t.Run("too long", func(t *testing.T) {
		lr := newLineReader(strings.NewReader("short\r\n"+strings.Repeat("x", 100)+"\r\n"), 32)
		if l, err := lr.readLine(); err != nil || string(l) != "short\r\n" {
			t.Fatalf("first line: %q %v", l, err)
		}
		if _, err := lr.readLine(); !errors.Is(err, errLineTooLong) {
			t.Fatalf("long line: err = %v, want errLineTooLong", err)
		}
	})
	t.Run("exactly the bound", func(t *testing.T) {
		line := strings.Repeat("y", 30) + "\r\n"
		lr := newLineReader(strings.NewReader(line), 32)
		if l, err := lr.readLine(); err != nil || string(l) != line {
			t.Fatalf("got %q %v", l, err)
		}
	})
	t.Run("retry after timeout", func(t *testing.T) {
		r := &stepReader{steps: []readStep{{data: "AB"}, {err: errTimeoutForTest}, {data: "C\r\nD"}}}
		lr := newLineReader(r, 32)
		if _, err := lr.readLine(); err != errTimeoutForTest {
			t.Fatalf("err = %v, want the timeout", err)
		}
		// The partial "AB" must survive the error.
		if l, err := lr.readLine(); err != nil || string(l) != "ABC\r\n" {
			t.Fatalf("after retry: %q %v", l, err)
		}
	})
	t.Run("buffered", func(t *testing.T) {
		lr := newLineReader(strings.NewReader("234 go\r\n\x16\x03\x01"), 32)
		if l, _ := lr.readLine(); string(l) != "234 go\r\n" {
			t.Fatalf("got %q", l)
		}
		// The rest came in the same read: it must be handed over intact.
		if b := lr.buffered(); string(b) != "\x16\x03\x01" {
			t.Fatalf("buffered = %q", b)
		}
	})
}

var errTimeoutForTest = errors.New("test: timeout")

type readStep struct {
	data string
	err  error
}

// stepReader returns its steps one Read at a time (a step larger than the
// caller's buffer spans several), then io.EOF.
type stepReader struct{ steps []readStep }

func (r *stepReader) Read(p []byte) (int, error) {
	if len(r.steps) == 0 {
		return 0, io.EOF
	}
	s := &r.steps[0]
	n := copy(p, s.data)
	s.data = s.data[n:]
	if s.data != "" {
		return n, nil // the rest of this step comes with the next Read
	}
	err := s.err
	r.steps = r.steps[1:]
	return n, err
}
