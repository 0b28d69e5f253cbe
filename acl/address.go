package acl

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// addressColumns parses the ADDRESS column, and the MASK column after it if
// the address is a bare IP, into a. It reports whether there was a MASK.
func (p *parser) addressColumns(c *columns, a *Address) (hadMask bool, err error) {
	f, err := c.take(p, "ADDRESS (a CIDR, an IP and a mask, all, samehost or samenet)")
	if err != nil {
		return false, err
	}
	w, err := p.word(f, "ADDRESS")
	if err != nil {
		return false, err
	}
	bare, isBare, err := p.address(w, a)
	if err != nil || !isBare {
		return false, err
	}
	f, err = c.take(p, fmt.Sprintf("a MASK after the bare IP %q (or write it as a CIDR, %s/%d)", w.text, bare, bare.BitLen()))
	if err != nil {
		return false, err
	}
	return true, p.mask(f, w, bare, a)
}

// address parses the ADDRESS column into a. A bare IP (no /length) is
// returned with isBare set: its mask is the next column.
func (p *parser) address(w item, a *Address) (bare netip.Addr, isBare bool, err error) {
	switch w.text {
	case "all":
		a.Kind = AddrAll
		return bare, false, nil
	case "samehost", "samenet":
		if err := p.readInterfaces(w); err != nil {
			return bare, false, err
		}
		a.Kind = AddrSameHost
		if w.text == "samenet" {
			a.Kind = AddrSameNet
		}
		return bare, false, nil
	}
	if strings.Contains(w.text, "/") {
		prefix, err := parseCIDR(w.text)
		if err != nil {
			return bare, false, p.errorf(w.pos, "%v", err)
		}
		*a = Address{Kind: AddrPrefix, Prefix: canonical(prefix)}
		a.keepHostBits(prefix, w.text)
		return bare, false, nil
	}
	ip, err := netip.ParseAddr(w.text)
	if err != nil {
		return bare, false, p.errorf(w.pos, "invalid address %q, expected a CIDR like 10.0.0.0/8, an IP and a mask, all, samehost or samenet", w.text)
	}
	if ip.Zone() != "" {
		return bare, false, p.errorf(w.pos, "invalid address %q: zones are not supported", w.text)
	}
	return ip, true, nil
}

// parseCIDR is netip.ParsePrefix with an error that says what is wrong.
func parseCIDR(s string) (netip.Prefix, error) {
	prefix, err := netip.ParsePrefix(s)
	if err == nil {
		return prefix, nil
	}
	ipText, bitsText, _ := strings.Cut(s, "/")
	ip, ipErr := netip.ParseAddr(ipText)
	if ipErr != nil || ip.Zone() != "" {
		return prefix, fmt.Errorf("invalid CIDR %q: %q is not an IP address", s, ipText)
	}
	if bits, err := strconv.Atoi(bitsText); err == nil && bits > ip.BitLen() {
		return prefix, fmt.Errorf("invalid CIDR %q: prefix length must be 0-%d for %s", s, ip.BitLen(), family(ip))
	}
	return prefix, fmt.Errorf("invalid CIDR %q: expected a prefix length 0-%d after the slash", s, ip.BitLen())
}

func family(ip netip.Addr) string {
	if ip.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// canonical masks the prefix and turns an IPv4-mapped IPv6 prefix into the
// IPv4 prefix it covers, since Decide unmaps clients before matching.
func canonical(prefix netip.Prefix) netip.Prefix {
	prefix = prefix.Masked()
	if prefix.Addr().Is4In6() && prefix.Bits() >= 96 {
		prefix = netip.PrefixFrom(prefix.Addr().Unmap(), prefix.Bits()-96)
	}
	return prefix
}

// mask parses the MASK column that follows the bare IP ip (written as w).
func (p *parser) mask(f field, w item, ip netip.Addr, a *Address) error {
	m, err := p.word(f, "MASK")
	if err != nil {
		return err
	}
	if m.text == "allow" || m.text == "reject" {
		return p.errorf(w.pos, "address %q has no mask, expected a MASK after it or a CIDR (%s/%d)", w.text, ip, ip.BitLen())
	}
	mask, err := netip.ParseAddr(m.text)
	if err != nil || mask.Zone() != "" {
		return p.errorf(m.pos, "invalid mask %q, expected a netmask like 255.255.0.0", m.text)
	}
	if mask.Is4() != ip.Is4() {
		return p.errorf(m.pos, "mask %q is %s but the address %q is %s", m.text, family(mask), w.text, family(ip))
	}
	bits, ok := maskBits(mask)
	if !ok {
		return p.errorf(m.pos, "invalid mask %q, expected contiguous one bits like 255.255.240.0", m.text)
	}
	prefix := netip.PrefixFrom(ip, bits)
	*a = Address{Kind: AddrPrefix, Prefix: canonical(prefix)}
	a.keepHostBits(prefix, w.text+" "+m.text)
	return nil
}

// keepHostBits records what was written, if prefix (as parsed, before
// canonical) has host bits set: lint tells the admin that the line
// matches a whole network.
func (a *Address) keepHostBits(prefix netip.Prefix, written string) {
	if prefix.Masked().Addr() != prefix.Addr() {
		a.Written, a.Host = written, prefix.Addr().Unmap()
	}
}

// maskBits returns the prefix length of a netmask, if its one bits are
// contiguous from the top.
func maskBits(mask netip.Addr) (int, bool) {
	bits := 0
	zero := false
	for _, b := range mask.AsSlice() {
		for i := 7; i >= 0; i-- {
			one := b&(1<<i) != 0
			if one && zero {
				return 0, false
			}
			if one {
				bits++
			} else {
				zero = true
			}
		}
	}
	return bits, true
}

// readInterfaces fetches the interface addresses once per parse, for
// samehost and samenet; w is the keyword that needed them.
func (p *parser) readInterfaces(w item) error {
	if !p.ifacesSet {
		p.ifacesSet = true
		get := p.opts.Interfaces
		if get == nil {
			get = systemInterfaces
		}
		p.ifaces, p.ifacesErr = get()
	}
	if p.ifacesErr != nil {
		return p.errorf(w.pos, "%s: read interface addresses: %v", w.text, p.ifacesErr)
	}
	return nil
}
