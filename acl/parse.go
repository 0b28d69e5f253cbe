package acl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// ParseError is a problem in the rule file, at a 1-based line and column
// (columns count characters of the physical line, a tab counting as one).
type ParseError struct {
	File string
	Line int
	Col  int
	Msg  string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// maxLine bounds one physical line; real lines are well under 200 bytes.
const maxLine = 1 << 20

// pos is where an item starts in the file.
type pos struct{ line, col int }

// item is a lexical item of a logical line: a word, or a comma (text ",").
type item struct {
	text string
	pos  pos
}

// field is one column: a single word, or for LISTENER a comma list, whose
// items alternate between words and commas in any arrangement.
type field []item

// Parse reads a rule file from r and compiles it. filename is used in error
// messages and in Rule.File. The first problem found is returned as a
// *ParseError; a read error is returned wrapped.
//
// Syntax, per line: TYPE LISTENER ADDRESS [MASK] ACTION. A # starts a
// comment that runs to the end of the physical line. A line whose last
// character before any comment is a backslash continues on the next line.
func (o Options) Parse(r io.Reader, filename string) (*List, error) {
	p := parser{file: filename, opts: o}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	var items []item // the logical line gathered so far
	var end pos      // just past the last character of the logical line
	lineNo := 0
	for sc.Scan() {
		lineNo++
		var cont bool
		items, end, cont = lexLine(items, sc.Text(), lineNo)
		if cont {
			continue
		}
		if err := p.rule(items, end); err != nil {
			return nil, err
		}
		items = items[:0]
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, p.errorf(pos{lineNo + 1, 1}, "line longer than %d bytes", maxLine)
		}
		return nil, fmt.Errorf("acl: read %s: %w", filename, err)
	}
	// A backslash on the last line continues into nothing: the line ends.
	if err := p.rule(items, end); err != nil {
		return nil, err
	}
	return compile(p.rules, p.ifaces), nil
}

// lexLine appends the items of one physical line to items. It reports the
// position just past the line's last character and whether the line ends in
// a continuation backslash.
func lexLine(items []item, line string, lineNo int) ([]item, pos, bool) {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	line = strings.TrimRight(line, " \t\r\v\f")
	cont := strings.HasSuffix(line, `\`)
	if cont {
		line = line[:len(line)-1]
	}
	col := 1
	i := 0
	for i < len(line) {
		c := line[i]
		switch {
		case isSpace(c):
			i++
			col++
		case c == ',':
			items = append(items, item{",", pos{lineNo, col}})
			i++
			col++
		default:
			start, startCol := i, col
			for i < len(line) && !isSpace(line[i]) && line[i] != ',' {
				if line[i]&0xC0 != 0x80 { // count characters, not UTF-8 bytes
					col++
				}
				i++
			}
			items = append(items, item{line[start:i], pos{lineNo, startCol}})
		}
	}
	return items, pos{lineNo, col}, cont
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'
}

// fields groups items into columns: a comma joins the words on either side
// into one column, whitespace alone separates columns.
func fields(items []item) []field {
	var fs []field
	for i, it := range items {
		if i > 0 && it.text != "," && items[i-1].text != "," {
			fs = append(fs, nil)
		} else if i == 0 {
			fs = append(fs, nil)
		}
		fs[len(fs)-1] = append(fs[len(fs)-1], it)
	}
	return fs
}

// parser holds the state of one Parse call.
type parser struct {
	file  string
	opts  Options
	rules []Rule

	ifaces    []netip.Prefix // interface addresses, read on first use
	ifacesErr error
	ifacesSet bool
}

func (p *parser) errorf(at pos, format string, args ...any) error {
	return &ParseError{File: p.file, Line: at.line, Col: at.col, Msg: fmt.Sprintf(format, args...)}
}

// rule parses one logical line; an empty one (blank or comment) adds nothing.
func (p *parser) rule(items []item, end pos) error {
	fs := fields(items)
	if len(fs) == 0 {
		return nil
	}
	r := Rule{File: p.file, Line: fs[0][0].pos.line}
	next := 0
	// take returns the next column, or reports that the line ended where
	// the column named by what was expected.
	take := func(what string) (field, error) {
		if next >= len(fs) {
			return nil, p.errorf(end, "line ends early, expected %s", what)
		}
		next++
		return fs[next-1], nil
	}

	f, _ := take("")
	w, err := p.word(f, "TYPE")
	if err != nil {
		return err
	}
	if r.Proto, err = ParseProto(w.text); err != nil {
		return p.errorf(w.pos, "unknown type %q, expected host, tcp or udp", w.text)
	}

	if f, err = take("LISTENER (a name, a comma list of names, or all)"); err != nil {
		return err
	}
	if r.Listeners, err = p.listeners(f); err != nil {
		return err
	}

	if f, err = take("ADDRESS (a CIDR, an IP and a mask, all, samehost or samenet)"); err != nil {
		return err
	}
	if w, err = p.word(f, "ADDRESS"); err != nil {
		return err
	}
	bare, isBare, err := p.address(w, &r.Addr)
	if err != nil {
		return err
	}
	if isBare {
		f, err = take(fmt.Sprintf("a MASK after the bare IP %q (or write it as a CIDR, %s/%d)", w.text, bare, bare.BitLen()))
		if err != nil {
			return err
		}
		if err = p.mask(f, w, bare, &r.Addr); err != nil {
			return err
		}
	}

	if f, err = take("ACTION (allow or reject)"); err != nil {
		return err
	}
	if r.Allow, err = p.action(f, isBare); err != nil {
		return err
	}
	if next < len(fs) {
		extra := fs[next][0]
		return p.errorf(extra.pos, "unexpected %q after the action, expected end of line (comments start with #)", extra.text)
	}
	p.rules = append(p.rules, r)
	return nil
}

// word checks that a column is a single word, not a comma list.
func (p *parser) word(f field, column string) (item, error) {
	for _, it := range f {
		if it.text == "," {
			return item{}, p.errorf(it.pos, "unexpected comma in %s, only LISTENER takes a comma list", column)
		}
	}
	return f[0], nil
}

// listeners parses the LISTENER column: "all", or names separated by commas.
func (p *parser) listeners(f field) ([]string, error) {
	var names []string
	wantName := true // the next item must be a name
	for _, it := range f {
		if it.text == "," {
			if wantName {
				return nil, p.errorf(it.pos, "empty listener name before comma, expected a name")
			}
			wantName = true
			continue
		}
		if it.text == "all" {
			if len(f) > 1 {
				return nil, p.errorf(it.pos, `"all" cannot be combined with listener names`)
			}
			return nil, nil
		}
		if !validName(it.text) {
			return nil, p.errorf(it.pos, "invalid listener name %q, expected lowercase letters, digits and '-'", it.text)
		}
		if !contains(names, it.text) {
			names = append(names, it.text)
		}
		wantName = false
	}
	if wantName {
		last := f[len(f)-1]
		return nil, p.errorf(pos{last.pos.line, last.pos.col + 1}, "listener list ends with a comma, expected a name")
	}
	return names, nil
}

func contains(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// validName matches the listener names config accepts: [a-z0-9-]+.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
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
	*a = Address{Kind: AddrPrefix, Prefix: canonical(netip.PrefixFrom(ip, bits))}
	return nil
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

// action parses the ACTION column. afterMask says a MASK came before it,
// which changes the advice when the column holds something else.
func (p *parser) action(f field, afterMask bool) (bool, error) {
	w, err := p.word(f, "ACTION")
	if err != nil {
		return false, err
	}
	switch w.text {
	case "allow":
		return true, nil
	case "reject":
		return false, nil
	}
	if _, err := netip.ParseAddr(w.text); err == nil && !afterMask {
		return false, p.errorf(w.pos, "unexpected mask %q: a mask follows a bare IP only, not a CIDR or keyword; expected allow or reject", w.text)
	}
	return false, p.errorf(w.pos, "invalid action %q, expected allow or reject", w.text)
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
