// Package acl decides which client addresses may use which listener, from a
// rule file written like PostgreSQL's pg_hba.conf:
//
//	# TYPE  LISTENER         ADDRESS               ACTION
//	host    cms-ftp,rtb      192.168.1.0/24        allow
//	host    ticket-printer   10.8.0.0 255.255.0.0  allow
//	host    all              samenet               allow
//	host    all              all                   reject
//
// Parse reads such a file into a List, which answers "may this address use
// this listener over this protocol?" without allocating and in logarithmic
// time, however long the file is. The first matching line wins; no matching
// line rejects. A Set holds the List in force and hands each listener a guard
// (the forward/udpstream/ftppassive Admit hook) that counts decisions and logs
// rejections, sampled so a port scan cannot flood the log.
//
// The package ends at the decision: it opens no sockets, and closing a
// rejected connection or dropping a datagram is the caller's job. It does
// not read the config: the caller passes the listener names the config
// defines (Options.Listeners) and the file's path, which config resolves.
package acl

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Proto is the TYPE column of a rule, and the protocol of a client in a query.
type Proto uint8

const (
	// ProtoAny is the "host" type: a rule that applies to TCP and UDP alike.
	// As a query protocol it means "unknown", and only host rules can match.
	ProtoAny Proto = iota
	ProtoTCP
	ProtoUDP

	numProtos = 3
)

// String returns the keyword used in the file: host, tcp or udp.
func (p Proto) String() string {
	switch p {
	case ProtoAny:
		return "host"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	}
	return fmt.Sprintf("Proto(%d)", uint8(p))
}

// ParseProto accepts the keywords of the TYPE column (host, tcp, udp), so a
// command line can name a protocol the same way the file does.
func ParseProto(s string) (Proto, error) {
	switch s {
	case "host":
		return ProtoAny, nil
	case "tcp":
		return ProtoTCP, nil
	case "udp":
		return ProtoUDP, nil
	}
	return 0, fmt.Errorf("acl: unknown protocol %q, expected host, tcp or udp", s)
}

// AddrKind says which form the ADDRESS column of a rule took.
type AddrKind uint8

const (
	// AddrPrefix is a CIDR, or an IP followed by a mask; Address.Prefix holds it.
	AddrPrefix AddrKind = iota
	// AddrAll matches every IPv4 and IPv6 address.
	AddrAll
	// AddrSameHost matches any address of this machine's interfaces.
	AddrSameHost
	// AddrSameNet matches any address in the subnets of this machine's interfaces.
	AddrSameNet
)

// Address is the ADDRESS column of a rule.
type Address struct {
	Kind AddrKind
	// Prefix is set for AddrPrefix only. It is masked (10.1.2.3/8 becomes
	// 10.0.0.0/8), and an IPv4-mapped IPv6 prefix of length 96 or more is
	// stored as the IPv4 prefix it covers, because clients are unmapped too.
	Prefix netip.Prefix

	// Written is the ADDRESS column as the file has it (and the MASK
	// column after a space) when it had host bits set, as in
	// 203.0.113.7/24 or 10.8.0.5 255.255.0.0; empty when it did not. As
	// in PostgreSQL such a line matches all of Prefix, though one address
	// (Host) may have been meant, so lint warns of it. It is not part of
	// what the rule means: String prints Prefix, and a rule parsed from
	// String has Written empty.
	Written string
	// Host is the address written before the length or mask when Written
	// is set (203.0.113.7), unmapped like Prefix; zero otherwise.
	Host netip.Addr
}

// String returns the canonical spelling: a CIDR or a keyword.
func (a Address) String() string {
	switch a.Kind {
	case AddrAll:
		return "all"
	case AddrSameHost:
		return "samehost"
	case AddrSameNet:
		return "samenet"
	}
	return a.Prefix.String()
}

// Rule is one line of the file (one logical line, if it was continued).
type Rule struct {
	File string // the name given to Parse
	Line int    // 1-based physical line the rule starts on

	Proto     Proto
	Listeners []string // nil: every listener (the "all" keyword)
	Addr      Address
	Allow     bool // ACTION: true for allow, false for reject

	// SSL is the hostssl TYPE: the rule matches only TCP connections that
	// arrived over TLS with a verified client certificate (Proto is
	// ProtoTCP then).
	SSL bool
	// CN is the cn= option of a hostssl rule, lowercased: the client
	// certificate's common name or one of its DNS names must match it,
	// exactly or as a glob where * stands for any run of characters.
	// Empty: any verified certificate.
	CN string
}

// String returns the rule in canonical form, for example
// "host web 127.0.0.2/32 reject". Parsing it gives back a rule that means
// the same: equal but for the position and Addr.Written, since a prefix is
// printed masked (10.1.2.3/8 as 10.0.0.0/8), as what it matches.
func (r *Rule) String() string {
	var b strings.Builder
	if r.SSL {
		b.WriteString("hostssl")
	} else {
		b.WriteString(r.Proto.String())
	}
	b.WriteByte(' ')
	if len(r.Listeners) == 0 {
		b.WriteString("all")
	} else {
		b.WriteString(strings.Join(r.Listeners, ","))
	}
	b.WriteByte(' ')
	b.WriteString(r.Addr.String())
	if r.Allow {
		b.WriteString(" allow")
	} else {
		b.WriteString(" reject")
	}
	if r.CN != "" {
		b.WriteString(" cn=")
		b.WriteString(r.CN)
	}
	return b.String()
}

// Where returns "file:line", the position of the rule for logs.
func (r *Rule) Where() string {
	return fmt.Sprintf("%s:%d", r.File, r.Line)
}

// Decision is the answer to a query. Rule is the deciding line, or nil when
// no line matched (which rejects). Rule points into the List and must not be
// modified.
type Decision struct {
	Allow bool
	Rule  *Rule
}

// Options adjusts how a file is compiled. The zero value is ready to use.
type Options struct {
	// Interfaces returns this machine's interface addresses with their
	// prefix lengths (192.168.1.10/24), for samehost and samenet. It is
	// called once per parse, and only if the file uses one of those
	// keywords; the answer is frozen into the List, so a reload (a new
	// Parse) is what picks up changed interfaces. Nil: net.InterfaceAddrs.
	Interfaces func() ([]netip.Prefix, error)
	// Listeners, when not nil, are the listener names the config defines:
	// a rule naming any other is an error at its line (a misspelt name
	// would otherwise leave that listener rejecting every source). Nil:
	// every valid name is accepted.
	Listeners []string
}

// Parse reads a rule file with default Options. See Options.Parse.
func Parse(r io.Reader, filename string) (*List, error) {
	return Options{}.Parse(r, filename)
}

// LoadFile opens, parses and compiles the rule file at path. A file that
// cannot be opened or read is an *fs.PathError naming its absolute path
// (whatever the working directory, the reader sees which file); rule
// errors name path as given, as rules' positions do.
func LoadFile(path string, opts Options) (*List, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return opts.Parse(f, path)
}

// List is a parsed and compiled rule file. It is immutable, and safe for
// concurrent use. A nil *List allows everything.
type List struct {
	rules []Rule
	// all holds the rules naming every listener; named holds, per listener
	// name, the rules naming it. A query looks in both and the lower rule
	// index wins, which keeps file order across the two without copying
	// the (possibly huge) "all" rules into every listener's tables.
	all   tableSet
	named map[string]*tableSet
	// ssl holds the hostssl rules in file order. They stay out of the
	// tables (a certificate name is no address) and are scanned: a file
	// has a handful of them, one per box office.
	ssl []sslRule
}

// Rules returns the rules in file order. The slice is shared with the List
// and must not be modified.
func (l *List) Rules() []Rule {
	if l == nil {
		return nil
	}
	return l.rules
}

// Listeners returns the listener names the file refers to, sorted, without
// "all", so the caller can report names its config does not define.
func (l *List) Listeners() []string {
	if l == nil {
		return nil
	}
	names := make([]string, 0, len(l.named))
	for name := range l.named {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Decide answers whether addr may use listener over proto: the first rule
// that names the listener (or all), applies to proto (or is a host rule) and
// covers addr decides; no such rule rejects. An IPv4-mapped IPv6 address is
// matched as the IPv4 address it carries. A nil List allows everything, with
// a nil Rule. Decide does not allocate.
func (l *List) Decide(listener string, proto Proto, addr netip.Addr) Decision {
	if l == nil {
		return Decision{Allow: true}
	}
	if proto >= numProtos || !addr.IsValid() {
		return Decision{}
	}
	return l.decision(l.lookup(listener, proto, addr.Unmap()))
}

// lookup returns the index of the first non-hostssl rule that decides
// (unmapped) addr on listener over proto, or noRule.
func (l *List) lookup(listener string, proto Proto, addr netip.Addr) uint32 {
	best := uint32(noRule)
	if ts := l.named[listener]; ts != nil {
		best = ts[proto].lookup(addr)
	}
	// The usual file names listeners first and ends with "all" lines, so
	// a match in the listener's table often makes the "all" table moot.
	if all := &l.all[proto]; all.first < best {
		best = min(best, all.lookup(addr))
	}
	return best
}

func (l *List) decision(index uint32) Decision {
	if index == noRule {
		return Decision{}
	}
	r := &l.rules[index]
	return Decision{Allow: r.Allow, Rule: r}
}

// Explain describes the decision for a query in one line, for
// "relay check -acl-test": "reject by relay_hba.conf:2 (host web
// 127.0.0.2/32 reject)" or "reject: no matching line".
func (l *List) Explain(listener string, proto Proto, addr netip.Addr) string {
	if l == nil {
		return "allow: no ACL loaded"
	}
	return l.Decide(listener, proto, addr).explain()
}

// explain is the one-line form of Explain and ExplainTLS.
func (d Decision) explain() string {
	if d.Rule == nil {
		return "reject: no matching line"
	}
	action := "reject"
	if d.Allow {
		action = "allow"
	}
	return fmt.Sprintf("%s by %s (%s)", action, d.Rule.Where(), d.Rule.String())
}

// Format writes the rules in canonical form, one per line, so that parsing
// the output gives back equal rules (file positions aside).
func (l *List) Format(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for i := range l.Rules() {
		bw.WriteString(l.rules[i].String())
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
