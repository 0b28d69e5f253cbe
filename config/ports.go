package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ParsePortRange parses "80" or "20000-20001" into its first and last port
// (equal for a single port). It is strict so that a value has one spelling:
// decimal digits only, no sign, no spaces, no leading zeros, first <= last.
// Port 0 is accepted only on its own ("0"), because it means "any free port"
// to the kernel and has no place inside a range.
func ParsePortRange(s string) (first, last uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	first, err = parsePort(a)
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return first, first, nil
	}
	last, err = parsePort(b)
	if err != nil {
		return 0, 0, err
	}
	if first == 0 || last == 0 {
		return 0, 0, fmt.Errorf("port range %q: port 0 cannot be part of a range", s)
	}
	if first > last {
		return 0, 0, fmt.Errorf("port range %q is reversed (first port above last)", s)
	}
	return first, last, nil
}

// FormatPortRange is the inverse of ParsePortRange: "80" for a single port,
// "first-last" otherwise.
func FormatPortRange(first, last uint16) string {
	if first == last {
		return strconv.Itoa(int(first))
	}
	return strconv.Itoa(int(first)) + "-" + strconv.Itoa(int(last))
}

func parsePort(s string) (uint16, error) {
	switch {
	case s == "":
		return 0, errors.New("missing port number")
	case len(s) > 5:
		return 0, fmt.Errorf("port %q is not a number from 0 to 65535", s)
	case len(s) > 1 && s[0] == '0':
		return 0, fmt.Errorf("port %q has a leading zero", s)
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("port %q is not a number from 0 to 65535", s)
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return 0, fmt.Errorf("port %q is above 65535", s)
	}
	return uint16(n), nil
}

// HostPorts is an address as the config writes it: "host:port" or
// "host:first-last", with an IPv6 host in brackets ("[::]:8100-8226"). The
// host is kept as written (it may be empty, an IP, or a DNS name); checking
// what kind of host a key allows is left to the caller.
type HostPorts struct {
	Host        string
	First, Last uint16 // equal for a single port
}

// ParseHostPorts splits s into host and port range. An IPv6 host must be in
// brackets, and brackets are only for IPv6, so that every value has one
// spelling and HostPorts.String gives it back.
func ParseHostPorts(s string) (HostPorts, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return HostPorts{}, fmt.Errorf("%q has no port (want host:port or host:first-last)", s)
	}
	host, ports := s[:i], s[i+1:]
	if strings.HasPrefix(host, "[") {
		if !strings.HasSuffix(host, "]") || len(host) < 2 {
			return HostPorts{}, fmt.Errorf("%q: write an IPv6 address as [addr]:port", s)
		}
		host = host[1 : len(host)-1]
		if !strings.Contains(host, ":") {
			return HostPorts{}, fmt.Errorf("%q: brackets are only for IPv6 addresses", s)
		}
	} else if strings.ContainsAny(host, ":[]") {
		return HostPorts{}, fmt.Errorf("%q: an IPv6 address must be in brackets, like [::1]:80", s)
	}
	first, last, err := ParsePortRange(ports)
	if err != nil {
		return HostPorts{}, err
	}
	return HostPorts{Host: host, First: first, Last: last}, nil
}

// String formats h the way ParseHostPorts reads it.
func (h HostPorts) String() string {
	return net.JoinHostPort(h.Host, FormatPortRange(h.First, h.Last))
}

// same reports whether h and o name the same ports of the same host (an
// IPv4-mapped address as its IPv4 one, a name in any case).
func (h HostPorts) same(o HostPorts) bool {
	return h.First == o.First && h.Last == o.Last && h.sameHost(o)
}

// sameHost reports whether h and o name the same host, as same compares it.
func (h HostPorts) sameHost(o HostPorts) bool {
	a, errA := netip.ParseAddr(h.Host)
	b, errB := netip.ParseAddr(o.Host)
	if errA == nil && errB == nil {
		return a.Unmap() == b.Unmap()
	}
	return strings.EqualFold(h.Host, o.Host)
}

// Len is the number of ports in h.
func (h HostPorts) Len() int { return int(h.Last) - int(h.First) + 1 }

// At is the i-th address of h as "host:port", i counted from First.
func (h HostPorts) At(i int) string {
	return net.JoinHostPort(h.Host, strconv.Itoa(int(h.First)+i))
}

// checkListenHost accepts what a listener may bind: an IP literal, or empty
// for every address. Names are refused because overlaps between listeners
// could not be checked and a name may resolve differently on reload.
func checkListenHost(host string) (netip.Addr, error) {
	if host == "" {
		return netip.IPv6Unspecified(), nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("listen host %q is not an IP address (use 0.0.0.0 or [::] for every address)", host)
	}
	return a.Unmap(), nil
}

// checkTCPListenAddr refuses an address a TCP socket can bind but never
// be reached at: Linux lets it bind and listen on a multicast or the
// broadcast address, and TCP never delivers a connection there.
func checkTCPListenAddr(a netip.Addr) error {
	if isGroup(a) {
		return fmt.Errorf("%s is a multicast or broadcast address: no TCP connection can arrive at it", a)
	}
	return nil
}

// isGroup reports whether a is a multicast or the broadcast address, where
// TCP neither accepts nor connects (Linux: ENETUNREACH on connect).
func isGroup(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// checkUpstreamHost accepts an IP literal or a DNS name (resolved when
// dialing); over tcp, not an address no connection can be made to.
func checkUpstreamHost(host, proto string) error {
	if host == "" {
		return errors.New("upstream host is empty")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if proto == "tcp" && isGroup(a) {
			return fmt.Errorf("%s is a multicast or broadcast address: no TCP connection can be made to it", host)
		}
		return nil
	}
	if !isDNSName(host) {
		return fmt.Errorf("upstream host %q is neither an IP address nor a host name", host)
	}
	// relay asks DNS servers for names and never reads /etc/hosts, so
	// localhost (RFC 6761, with the names under it) would be whatever
	// they answer; and as a name it escapes the loop checks.
	if n := strings.ToLower(strings.TrimSuffix(host, ".")); n == "localhost" || strings.HasSuffix(n, ".localhost") {
		return fmt.Errorf("upstream host %q: relay looks names up in DNS, not in /etc/hosts; write 127.0.0.1 or [::1] for this box", host)
	}
	return nil
}

// isDNSName reports whether s is a plausible host name: dot-separated labels
// of letters, digits and inner hyphens, 1-63 bytes each, 253 in all. An IP
// that failed to parse (like 10.0.0.300) is refused by the last-label rule:
// a top-level label is never all digits.
func isDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range []byte(l) {
			ok := c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
			if !ok {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}
