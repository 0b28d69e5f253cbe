package sockerr

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// appendEntry writes e as the kernel does after a MSG_ERRQUEUE read: one
// control message holding a sock_extended_err and the offender's sockaddr.
func appendEntry(b []byte, level, typ int32, e Error) []byte {
	ne := binary.NativeEndian
	data := make([]byte, sizeofExtendedErr, sizeofExtendedErr+unix.SizeofSockaddrInet6)
	ne.PutUint32(data, uint32(e.Errno))
	data[4], data[5], data[6] = e.Origin, e.Type, e.Code
	switch {
	case e.Offender.Is4():
		sa := make([]byte, unix.SizeofSockaddrInet4)
		ne.PutUint16(sa, unix.AF_INET)
		a := e.Offender.As4()
		copy(sa[4:], a[:])
		data = append(data, sa...)
	case e.Offender.Is6():
		sa := make([]byte, unix.SizeofSockaddrInet6)
		ne.PutUint16(sa, unix.AF_INET6)
		a := e.Offender.As16()
		copy(sa[8:], a[:])
		data = append(data, sa...)
	default:
		data = append(data, make([]byte, unix.SizeofSockaddrInet4)...) // AF_UNSPEC
	}
	h := make([]byte, unix.CmsgSpace(len(data)))
	if unix.SizeofCmsghdr == 16 {
		ne.PutUint64(h, uint64(unix.CmsgLen(len(data))))
	} else {
		ne.PutUint32(h, uint32(unix.CmsgLen(len(data))))
	}
	ne.PutUint32(h[unix.SizeofCmsghdr-8:], uint32(level))
	ne.PutUint32(h[unix.SizeofCmsghdr-4:], uint32(typ))
	copy(h[unix.CmsgLen(0):], data)
	return append(b, h...)
}

func TestParse(t *testing.T) {
	hostUnreach := Error{Errno: syscall.EHOSTUNREACH, Origin: OriginICMP, Type: 3, Code: 1,
		Offender: netip.MustParseAddr("10.99.0.1")}
	addrUnreach6 := Error{Errno: syscall.EHOSTUNREACH, Origin: OriginICMP6, Type: 1, Code: 3,
		Offender: netip.MustParseAddr("fd00:99::1")}
	local := Error{Errno: syscall.EMSGSIZE, Origin: OriginLocal}
	// A timestamp or TTL message the kernel may put first.
	other := appendEntry(nil, unix.IPPROTO_IP, unix.IP_TTL, hostUnreach)
	mapped := appendEntry(nil, unix.IPPROTO_IPV6, unix.IPV6_RECVERR,
		Error{Errno: syscall.ECONNREFUSED, Origin: OriginICMP, Type: 3, Code: 3,
			Offender: netip.AddrFrom16(netip.MustParseAddr("::ffff:127.0.0.1").As16())})
	full := appendEntry(nil, unix.IPPROTO_IP, unix.IP_RECVERR, hostUnreach)
	for _, tc := range []struct {
		name   string
		oob    []byte
		want   Error
		ok     bool
		detail string
	}{
		{"icmp host unreachable", full, hostUnreach, true, "ICMP host unreachable from 10.99.0.1"},
		{"icmpv6 address unreachable", appendEntry(nil, unix.IPPROTO_IPV6, unix.IPV6_RECVERR, addrUnreach6),
			addrUnreach6, true, "ICMPv6 host unreachable (address unreachable) from fd00:99::1"},
		{"local, no offender", appendEntry(nil, unix.IPPROTO_IP, unix.IP_RECVERR, local), local, true, "local error"},
		{"after another message", appendEntry(other, unix.IPPROTO_IP, unix.IP_RECVERR, hostUnreach),
			hostUnreach, true, "ICMP host unreachable from 10.99.0.1"},
		{"mapped offender unmapped", mapped, Error{Errno: syscall.ECONNREFUSED, Origin: OriginICMP, Type: 3, Code: 3,
			Offender: netip.MustParseAddr("127.0.0.1")}, true, "ICMP port unreachable from 127.0.0.1"},
		{"no errno", appendEntry(nil, unix.IPPROTO_IP, unix.IP_RECVERR, Error{Origin: 5}), Error{}, false, ""},
		{"other message only", other, Error{}, false, ""},
		{"empty", nil, Error{}, false, ""},
		{"header only", full[:unix.SizeofCmsghdr], Error{}, false, ""},
		{"cut in the error", full[:unix.CmsgLen(8)], Error{}, false, ""},
		{"length past the end", append(append([]byte{}, full[:8]...), 0xff), Error{}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Parse(tc.oob)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("Parse = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
			if ok && got.Detail() != tc.detail {
				t.Errorf("Detail = %q, want %q", got.Detail(), tc.detail)
			}
		})
	}
}

func TestErrorWraps(t *testing.T) {
	e := &Error{Errno: syscall.EHOSTUNREACH, Origin: OriginICMP, Type: 3, Code: 1, Offender: netip.MustParseAddr("10.0.0.1")}
	err := error(&net.OpError{Op: "read", Net: "udp", Err: e})
	if !errors.Is(err, syscall.EHOSTUNREACH) {
		t.Errorf("errors.Is(%v, EHOSTUNREACH) = false", err)
	}
	if want := "no route to host (ICMP host unreachable from 10.0.0.1)"; e.Error() != want {
		t.Errorf("Error = %q, want %q", e.Error(), want)
	}
}

// FuzzParse: any bytes parse without a panic; an entry found has an errno;
// an entry written as the kernel writes it reads back the same.
func FuzzParse(f *testing.F) {
	f.Add([]byte(nil), uint32(113), uint8(2), uint8(3), uint8(1), []byte{10, 99, 0, 1})
	f.Add(appendEntry(nil, unix.IPPROTO_IP, unix.IP_TTL, Error{Errno: 1}), uint32(111), uint8(3), uint8(1), uint8(4),
		netip.MustParseAddr("fd00::1").AsSlice())
	f.Add(appendEntry(nil, unix.IPPROTO_IPV6, unix.IPV6_RECVERR, Error{Errno: 90, Origin: 1}), uint32(0), uint8(0), uint8(0), uint8(0), []byte{})
	f.Fuzz(func(t *testing.T, junk []byte, errno uint32, origin, typ, code uint8, offender []byte) {
		if e, ok := Parse(junk); ok && e.Errno == 0 {
			t.Fatalf("Parse(%x) = %+v without an errno", junk, e)
		}
		want := Error{Errno: syscall.Errno(errno), Origin: origin, Type: typ, Code: code}
		if a, ok := netip.AddrFromSlice(offender); ok {
			want.Offender = a.Unmap()
		}
		oob := appendEntry(nil, unix.IPPROTO_IP, unix.IP_RECVERR, want)
		got, ok := Parse(oob)
		if errno == 0 {
			if ok {
				t.Fatalf("an entry without errno parsed: %+v", got)
			}
			return
		}
		if !ok || got != want {
			t.Fatalf("Parse(appendEntry(%+v)) = %+v, %v", want, got, ok)
		}
		_ = got.Error()
	})
}

// TestDrainPortUnreachable: on a real socket, the ICMP port unreachable of a
// closed loopback port is queued with its details, Drain reads it, and the
// socket no longer signals POLLERR afterwards.
func TestDrainPortUnreachable(t *testing.T) {
	for _, loop := range []string{"127.0.0.1", "::1"} {
		t.Run(loop, func(t *testing.T) {
			dead, err := net.ListenPacket("udp", net.JoinHostPort(loop, "0"))
			if err != nil {
				t.Skipf("no %s: %v", loop, err)
			}
			to := dead.LocalAddr().String()
			dead.Close()
			c, err := (&net.Dialer{Control: Control}).Dial("udp", to)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			rc, _ := c.(*net.UDPConn).SyscallConn()
			if !waitPoll(rc, unix.POLLERR) {
				t.Fatal("no POLLERR after a datagram to a closed port")
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, rerr := c.Read(make([]byte, 8))
			if !errors.Is(rerr, syscall.ECONNREFUSED) {
				t.Fatalf("read: %v, want connection refused", rerr)
			}
			err = Explain(rc, rerr)
			if !strings.Contains(err.Error(), "port unreachable from "+loop) || !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("Explain = %v", err)
			}
			if waitPoll(rc, 0) {
				t.Errorf("POLLERR still set: the error queue was not drained")
			}
		})
	}
}

// waitPoll reports whether poll(2) on rc's socket shows want within 5 s;
// with want 0, whether it shows POLLERR now.
func waitPoll(rc syscall.RawConn, want int16) bool {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ev int16
		_ = rc.Control(func(fd uintptr) {
			p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(p, 0); err == nil {
				ev = p[0].Revents
			}
		})
		if want == 0 {
			return ev&unix.POLLERR != 0
		}
		if ev&want != 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}
