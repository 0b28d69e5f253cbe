package ftppassive

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// addrFromFuzz builds an address from fuzzer bytes: 4 bytes give IPv4, 16
// give IPv6, anything else is not an address.
func addrFromFuzz(b []byte) (netip.Addr, bool) {
	switch len(b) {
	case 4:
		return netip.AddrFrom4([4]byte(b)), true
	case 16:
		return netip.AddrFrom16([16]byte(b)), true
	}
	return netip.Addr{}, false
}

// FuzzHostPort: parse227 and parsePORT never panic, whatever they accept is
// a valid IPv4 address with a non-zero port, and formatting it back parses
// to the same value.
func FuzzHostPort(f *testing.F) {
	for _, s := range []string{
		"227 Entering Passive Mode (192,168,1,2,195,80).",
		"227 =127,0,0,1,4,1",
		"227 (1,2,3,4,0,0)",
		"227 (256,1,1,1,1,1)",
		"1,2,3,4,5,6,7",
		"227 ,,,,,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, parse := range []func(string) (netip.AddrPort, error){parse227, parsePORT} {
			ap, err := parse(s)
			if err != nil {
				continue
			}
			if !ap.Addr().Is4() || ap.Port() == 0 {
				t.Fatalf("%q parsed to invalid %v", s, ap)
			}
			if back, err := parse227(format227(ap)); err != nil || back != ap {
				t.Fatalf("227 round trip of %v: %v %v", ap, back, err)
			}
			if back, err := parsePORT(strings.TrimSuffix(strings.TrimPrefix(formatPORT(ap), "PORT "), "\r\n")); err != nil || back != ap {
				t.Fatalf("PORT round trip of %v: %v %v", ap, back, err)
			}
		}
	})
}

// FuzzRoundTrip: for every IPv4 address and port, parse(format(x)) == x for
// 227, PORT, 229 and EPRT; for IPv6, for EPRT.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1}, uint16(21))
	f.Add([]byte{0, 0, 0, 0}, uint16(65535))
	f.Add(netip.MustParseAddr("2001:db8::1").AsSlice(), uint16(1024))
	f.Add(netip.MustParseAddr("::ffff:10.0.0.1").AsSlice(), uint16(1))
	f.Fuzz(func(t *testing.T, ip []byte, port uint16) {
		addr, ok := addrFromFuzz(ip)
		if !ok || port == 0 {
			t.Skip()
		}
		ap := netip.AddrPortFrom(addr, port)
		if back, err := parseEPRT(strings.TrimSuffix(strings.TrimPrefix(formatEPRT(ap), "EPRT "), "\r\n")); err != nil || back != ap {
			t.Fatalf("EPRT round trip of %v: %v %v", ap, back, err)
		}
		if back, err := parse229(format229(port)); err != nil || back != port {
			t.Fatalf("229 round trip of %d: %d %v", port, back, err)
		}
		if !addr.Is4() {
			return
		}
		if back, err := parse227(format227(ap)); err != nil || back != ap {
			t.Fatalf("227 round trip of %v: %v %v", ap, back, err)
		}
		if back, err := parsePORT(strings.TrimSuffix(strings.TrimPrefix(formatPORT(ap), "PORT "), "\r\n")); err != nil || back != ap {
			t.Fatalf("PORT round trip of %v: %v %v", ap, back, err)
		}
	})
}

// FuzzEPSVAndEPRT: arbitrary replies and arguments never panic and accepted
// values survive a round trip.
func FuzzEPSVAndEPRT(f *testing.F) {
	for _, s := range []string{
		"229 Entering Extended Passive Mode (|||6446|)",
		"|2|::1|40000|",
		"|1|10.0.0.1|2000|",
		"!!!65535!",
		"|2|fe80::1%eth0|2000|",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if port, err := parse229(s); err == nil {
			if port == 0 {
				t.Fatalf("%q parsed to port 0", s)
			}
			if back, err := parse229(format229(port)); err != nil || back != port {
				t.Fatalf("229 round trip of %d: %d %v", port, back, err)
			}
		}
		if ap, err := parseEPRT(s); err == nil {
			if ap.Port() == 0 || ap.Addr().Zone() != "" {
				t.Fatalf("%q parsed to invalid %v", s, ap)
			}
			if back, err := parseEPRT(strings.TrimSuffix(strings.TrimPrefix(formatEPRT(ap), "EPRT "), "\r\n")); err != nil || back != ap {
				t.Fatalf("EPRT round trip of %v: %v %v", ap, back, err)
			}
		}
	})
}

// FuzzLines: the framer reassembles any byte stream exactly (no byte lost,
// added or reordered), no line exceeds the bound, and the reply framer and
// command parser accept every line without panicking.
func FuzzLines(f *testing.F) {
	f.Add([]byte("220-hi\r\n there\r\n220 ready\r\n"), uint8(7))
	f.Add([]byte("\xff\xf4\xff\xf2ABOR\r\nPASV\r\n"), uint8(1))
	f.Add([]byte(strings.Repeat("x", 100)+"\n"), uint8(3))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		const bound = 64
		steps := make([]readStep, 0, len(in)/int(chunk|1)+1)
		for rest := in; len(rest) > 0; {
			n := min(int(chunk|1), len(rest))
			steps = append(steps, readStep{data: string(rest[:n])})
			rest = rest[n:]
		}
		lr := newLineReader(&stepReader{steps: steps}, bound)
		var out bytes.Buffer
		var framer replyFramer
		for {
			l, err := lr.readLine()
			if err != nil {
				if err == errLineTooLong {
					// Everything before the long line came out intact.
					if !bytes.HasPrefix(in, out.Bytes()) {
						t.Fatalf("prefix mismatch before a long line")
					}
					return
				}
				break
			}
			if len(l) > bound {
				t.Fatalf("line of %d bytes exceeds the bound", len(l))
			}
			framer.line(l)
			parseCommand(l)
			out.Write(l)
		}
		if !bytes.Equal(out.Bytes(), in) {
			t.Fatalf("reassembled %q, want %q", out.Bytes(), in)
		}
	})
}
