package proxyhdr

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
)

// library formats the header go-proxyproto writes for src -> dst.
func library(t testing.TB, version int, src, dst netip.AddrPort) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(byte(version), net.TCPAddrFromAddrPort(src), net.TCPAddrFromAddrPort(dst))
	b, err := h.Format()
	if err != nil {
		t.Fatalf("go-proxyproto Format: %v", err)
	}
	return b
}

func TestAppendMatchesLibrary(t *testing.T) {
	tests := []struct {
		name     string
		src, dst string
		v1       string // the v1 text, checked by hand as well
	}{
		{"ipv4", "192.0.2.10:51234", "198.51.100.1:80", "PROXY TCP4 192.0.2.10 198.51.100.1 51234 80\r\n"},
		{"ipv6", "[2001:db8::7]:40000", "[2001:db8:0:1::1]:443", "PROXY TCP6 2001:db8::7 2001:db8:0:1::1 40000 443\r\n"},
		{"mapped ipv4 is ipv4", "[::ffff:127.0.0.2]:1", "[::ffff:127.0.0.1]:65535", "PROXY TCP4 127.0.0.2 127.0.0.1 1 65535\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := netip.MustParseAddrPort(tc.src), netip.MustParseAddrPort(tc.dst)
			usrc := netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
			udst := netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
			if got := string(Append(nil, 1, src, dst)); got != tc.v1 {
				t.Errorf("v1 = %q, want %q", got, tc.v1)
			}
			for _, v := range []int{1, 2} {
				got, want := Append(nil, v, src, dst), library(t, v, usrc, udst)
				if !bytes.Equal(got, want) {
					t.Errorf("v%d:\n got  %x\n want %x (go-proxyproto)", v, got, want)
				}
			}
		})
	}
}

func TestAppendUnknown(t *testing.T) {
	v4, v6 := netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("[2001:db8::1]:2")
	if got := string(Append(nil, 1, v4, v6)); got != "PROXY UNKNOWN\r\n" {
		t.Errorf("v1 mixed families = %q", got)
	}
	got := Append(nil, 2, v4, netip.AddrPort{})
	want := append(v2sig[:], 0x20, 0x00, 0, 0)
	if !bytes.Equal(got, want) {
		t.Errorf("v2 invalid dst = %x, want LOCAL %x", got, want)
	}
	h, err := Parse(got)
	if err != nil || !h.Local {
		t.Errorf("Parse(LOCAL) = %+v, %v", h, err)
	}
}

func TestAppendAllocs(t *testing.T) {
	src, dst := netip.MustParseAddrPort("[2001:db8::7]:40000"), netip.MustParseAddrPort("[2001:db8::1]:443")
	var buf [MaxAppend]byte
	for _, v := range []int{1, 2} {
		if n := testing.AllocsPerRun(100, func() { _ = Append(buf[:0], v, src, dst) }); n != 0 {
			t.Errorf("v%d: %v allocations per Append, want 0", v, n)
		}
	}
	if n := len(Append(nil, 1, netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535"),
		netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"))); n > MaxAppend {
		t.Errorf("longest v1 is %d bytes, MaxAppend %d", n, MaxAppend)
	}
}

func TestNeed(t *testing.T) {
	v2 := Append(nil, 2, netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2"))
	v1 := Append(nil, 1, netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2"))
	tests := []struct {
		name string
		b    []byte
		need int
		err  error
	}{
		{"nothing yet", nil, 0, nil},
		{"v2 signature so far", v2[:7], 0, nil},
		{"v2 fixed part short", v2[:15], 0, nil},
		{"v2 whole", v2, len(v2), nil},
		{"v2 with payload after", append(append([]byte{}, v2...), "GET /"...), len(v2), nil},
		{"v2 too long", append(append([]byte{}, v2[:14]...), 0xff, 0xff), 0, ErrTooLong},
		{"v1 so far", v1[:4], 0, nil},
		{"v1 line incomplete", v1[:20], 0, nil},
		{"v1 whole with payload", append(append([]byte{}, v1...), "GET"...), len(v1), nil},
		{"v1 without end", append([]byte("PROXY "), bytes.Repeat([]byte("1"), 120)...), 0, ErrTooLong},
		{"http", []byte("GET / HTTP/1.1\r\n"), 0, ErrNotHeader},
		{"one wrong byte", []byte("PROXX "), 0, ErrNotHeader},
		{"v2 signature wrong", append([]byte("\r\n\r\n\x00\r\nQUIX"), 0x21), 0, ErrNotHeader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			need, err := Need(tc.b)
			if need != tc.need || !errors.Is(err, tc.err) {
				t.Fatalf("Need = %d, %v; want %d, %v", need, err, tc.need, tc.err)
			}
		})
	}
}

func TestParse(t *testing.T) {
	src, dst := netip.MustParseAddrPort("192.0.2.10:51234"), netip.MustParseAddrPort("198.51.100.1:80")
	for _, v := range []int{1, 2} {
		h, err := Parse(Append(nil, v, src, dst))
		if err != nil || h.Local || h.Source != src || h.Dest != dst || int(h.Version) != v {
			t.Errorf("v%d round trip: %+v, %v", v, h, err)
		}
	}
	bad := []struct {
		name string
		b    string
	}{
		{"v1 missing port", "PROXY TCP4 192.0.2.1 192.0.2.2 1\r\n"},
		{"v1 bad address", "PROXY TCP4 192.0.2.300 192.0.2.2 1 2\r\n"},
		{"v1 bare LF", "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n"},
		{"bytes after", "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\nGET"},
		{"v2 truncated", string(Append(nil, 2, src, dst)[:20])},
		{"not a header", "SSH-2.0-OpenSSH\r\n"},
	}
	for _, tc := range bad {
		if h, err := Parse([]byte(tc.b)); err == nil {
			t.Errorf("%s: Parse accepted %q as %+v", tc.name, tc.b, h)
		}
	}
}

// FuzzAppend: for any addresses and ports, Append writes what go-proxyproto
// writes, and Parse reads back what was written.
func FuzzAppend(f *testing.F) {
	f.Add([]byte{192, 0, 2, 1}, []byte{198, 51, 100, 1}, uint16(1), uint16(80))
	f.Add(bytes.Repeat([]byte{0x20}, 16), bytes.Repeat([]byte{0xfe}, 16), uint16(65535), uint16(0))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1}, []byte{127, 0, 0, 1}, uint16(5), uint16(6))
	f.Fuzz(func(t *testing.T, s, d []byte, sp, dp uint16) {
		sa, ok1 := netip.AddrFromSlice(s)
		da, ok2 := netip.AddrFromSlice(d)
		if !ok1 || !ok2 || sa.Unmap().Is4() != da.Unmap().Is4() {
			return
		}
		src, dst := netip.AddrPortFrom(sa.Unmap(), sp), netip.AddrPortFrom(da.Unmap(), dp)
		for _, v := range []int{1, 2} {
			got := Append(nil, v, src, dst)
			if want := library(t, v, src, dst); !bytes.Equal(got, want) {
				t.Fatalf("v%d %s -> %s:\n got  %q\n want %q", v, src, dst, got, want)
			}
			if need, err := Need(got); need != len(got) || err != nil {
				t.Fatalf("v%d Need = %d, %v; want %d", v, need, err, len(got))
			}
			h, err := Parse(got)
			if err != nil || h.Source != src || h.Dest != dst {
				t.Fatalf("v%d Parse = %+v, %v; want %s -> %s", v, h, err, src, dst)
			}
		}
	})
}

// FuzzNeedParse feeds arbitrary first bytes: Need never claims more bytes
// than the limits or fewer than a header can be, and whatever Parse accepts
// is exactly the length Need gave, with valid addresses unless Local.
func FuzzNeedParse(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\nGET /"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(Append(nil, 2, netip.MustParseAddrPort("[2001:db8::1]:1"), netip.MustParseAddrPort("[2001:db8::2]:2")))
	f.Add(append(v2sig[:], 0x21, 0x12, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x03abc"))
	f.Fuzz(func(t *testing.T, b []byte) {
		need, err := Need(b)
		if err != nil {
			return
		}
		if need > MaxV2 || need != 0 && need <= len(v1sig) {
			t.Fatalf("Need = %d for %q", need, b)
		}
		if need == 0 || need > len(b) {
			return
		}
		h, err := Parse(b[:need])
		if err != nil {
			return
		}
		if !h.Local && (!h.Source.Addr().IsValid() || !h.Dest.Addr().IsValid()) {
			t.Fatalf("Parse(%q) = %+v: a non-local header without addresses", b[:need], h)
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	src, dst := netip.MustParseAddrPort("192.0.2.10:51234"), netip.MustParseAddrPort("198.51.100.1:80")
	b.Run("proxyhdr", func(b *testing.B) {
		var buf [MaxAppend]byte
		b.ReportAllocs()
		for b.Loop() {
			_ = Append(buf[:0], 2, src, dst)
		}
	})
	b.Run("go-proxyproto", func(b *testing.B) {
		s, d := net.TCPAddrFromAddrPort(src), net.TCPAddrFromAddrPort(dst)
		b.ReportAllocs()
		for b.Loop() {
			_, _ = proxyproto.HeaderProxyFromAddrs(2, s, d).Format()
		}
	})
}
