package acl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"slices"
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
		if errors.As(err, new(*fs.PathError)) {
			// A file's read error names the file already ("read
			// /x: is a directory"); saying it again doubles the text.
			return nil, err
		}
		return nil, fmt.Errorf("acl: read %s: %w", filename, err)
	}
	// A backslash on the last line continues into nothing: the line ends.
	if err := p.rule(items, end); err != nil {
		return nil, err
	}
	return compile(p.rules, p.ifaces), nil
}

// parser holds the state of one Parse call.
type parser struct {
	file  string
	opts  Options
	rules []Rule
	// names interns listener names, so rules do not keep whole lines of
	// the file alive through substrings.
	names map[string]string
	fs    []field // the columns of the current line, reused

	ifaces    []netip.Prefix // interface addresses, read on first use
	ifacesErr error
	ifacesSet bool
}

func (p *parser) errorf(at pos, format string, args ...any) error {
	return &ParseError{File: p.file, Line: at.line, Col: at.col, Msg: fmt.Sprintf(format, args...)}
}

// rule parses one logical line; an empty one (blank or comment) adds nothing.
func (p *parser) rule(items []item, end pos) error {
	p.fs = fields(p.fs[:0], items)
	c := columns{fs: p.fs, end: end}
	if len(c.fs) == 0 {
		return nil
	}
	r := Rule{File: p.file, Line: c.fs[0][0].pos.line}
	f, _ := c.take(p, "TYPE")
	w, err := p.word(f, "TYPE")
	if err != nil {
		return err
	}
	if w.text == "hostssl" {
		r.Proto, r.SSL = ProtoTCP, true
	} else if r.Proto, err = ParseProto(w.text); err != nil {
		return p.errorf(w.pos, "unknown type %q, expected host, hostssl, tcp or udp", w.text)
	}
	if f, err = c.take(p, "LISTENER (a name, a comma list of names, or all)"); err != nil {
		return err
	}
	if r.Listeners, err = p.listeners(f); err != nil {
		return err
	}
	hadMask, err := p.addressColumns(&c, &r.Addr)
	if err != nil {
		return err
	}
	if f, err = c.take(p, "ACTION (allow or reject)"); err != nil {
		return err
	}
	if r.Allow, err = p.action(f, hadMask); err != nil {
		return err
	}
	for c.next < len(c.fs) {
		f, _ = c.take(p, "")
		if err := p.option(f, &r); err != nil {
			return err
		}
	}
	p.rules = append(p.rules, r)
	return nil
}

// option parses one option after the ACTION; cn=PATTERN is the only one.
func (p *parser) option(f field, r *Rule) error {
	w, err := p.word(f, "an option")
	if err != nil {
		return err
	}
	pattern, ok := strings.CutPrefix(w.text, "cn=")
	switch {
	case !ok:
		return p.errorf(w.pos, "unexpected %q after the action, expected cn=NAME on a hostssl line or end of line (comments start with #)", w.text)
	case !r.SSL:
		return p.errorf(w.pos, "cn= needs the hostssl type: a %s line also matches connections without a certificate", r.Proto)
	case r.CN != "":
		return p.errorf(w.pos, "cn= given twice on one line")
	case !validPattern(pattern):
		return p.errorf(w.pos, "invalid cn pattern %q, expected a certificate name of letters, digits, '.', '-', '_', '@', with * for any run of characters", pattern)
	}
	r.CN = strings.ToLower(pattern)
	return nil
}

func validPattern(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '-' || c == '_' || c == '@' || c == '*') {
			return false
		}
	}
	return true
}

// columns walks the columns of one logical line.
type columns struct {
	fs   []field
	next int
	end  pos // just past the line's last character
}

// take returns the next column, or an error placed at the end of the line
// saying what was expected there.
func (c *columns) take(p *parser, what string) (field, error) {
	if c.next >= len(c.fs) {
		return nil, p.errorf(c.end, "line ends early, expected %s", what)
	}
	c.next++
	return c.fs[c.next-1], nil
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
		if p.opts.Listeners != nil && !contains(p.opts.Listeners, it.text) {
			defined := slices.Sorted(slices.Values(p.opts.Listeners))
			return nil, p.errorf(it.pos, "listener %q is not defined in the config (it has %s)", it.text, strings.Join(defined, ", "))
		}
		if !contains(names, it.text) {
			names = append(names, p.intern(it.text))
		}
		wantName = false
	}
	if wantName {
		last := f[len(f)-1]
		return nil, p.errorf(pos{last.pos.line, last.pos.col + 1}, "listener list ends with a comma, expected a name")
	}
	return names, nil
}

func (p *parser) intern(name string) string {
	if s, ok := p.names[name]; ok {
		return s
	}
	if p.names == nil {
		p.names = map[string]string{}
	}
	s := strings.Clone(name)
	p.names[s] = s
	return s
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
