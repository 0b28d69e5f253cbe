package upstream

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// The DNS wire format, kept pure (bytes in, values out) so it can be
// fuzzed; resolver.go does the I/O.

// Errors of a DNS answer.
var (
	errNoSuchHost = errors.New("upstream: no such host")
	errTruncated  = errors.New("upstream: dns answer truncated")
)

// maxCNAMEs bounds the alias chain followed inside one answer.
const maxCNAMEs = 8

// fqdn turns a host name into the absolute name asked for: names are looked
// up as written, no search domains.
func fqdn(host string) (dnsmessage.Name, error) {
	if !strings.HasSuffix(host, ".") {
		host += "."
	}
	return dnsmessage.NewName(host)
}

// buildQuery is a recursive query for typ records of name.
func buildQuery(id uint16, name dnsmessage.Name, typ dnsmessage.Type) ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), dnsmessage.Header{ID: id, RecursionDesired: true})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(dnsmessage.Question{Name: name, Type: typ, Class: dnsmessage.ClassINET}); err != nil {
		return nil, err
	}
	return b.Finish()
}

// record is an address or alias record of an answer section.
type record struct {
	name   string // lowercase, absolute
	ttl    uint32
	addr   netip.Addr // A or AAAA
	target string     // CNAME
}

// parseAnswer reads the reply to query (id, name, typ): the addresses of
// type typ that name leads to, following CNAMEs inside the answer, in the
// answer's order, and the smallest TTL of the records on the way. A reply
// for another query is an error, as are NXDOMAIN (errNoSuchHost), a
// truncated reply (errTruncated) and any other failure code. A reply with
// no such address is not an error: nil addresses.
func parseAnswer(msg []byte, id uint16, name dnsmessage.Name, typ dnsmessage.Type) ([]netip.Addr, uint32, error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	switch {
	case err != nil:
		return nil, 0, fmt.Errorf("upstream: bad dns answer: %w", err)
	case h.ID != id || !h.Response:
		return nil, 0, errors.New("upstream: dns answer for another query")
	case h.Truncated:
		return nil, 0, errTruncated
	case h.RCode == dnsmessage.RCodeNameError:
		return nil, 0, errNoSuchHost
	case h.RCode != dnsmessage.RCodeSuccess:
		return nil, 0, fmt.Errorf("upstream: dns server answered %v", h.RCode)
	}
	q, err := p.Question()
	if err != nil || q.Type != typ || !strings.EqualFold(q.Name.String(), name.String()) {
		return nil, 0, errors.New("upstream: dns answer for another question")
	}
	if err := p.SkipAllQuestions(); err != nil {
		return nil, 0, fmt.Errorf("upstream: bad dns answer: %w", err)
	}
	recs, err := answerRecords(&p, typ)
	if err != nil {
		return nil, 0, err
	}
	return follow(recs, strings.ToLower(name.String()))
}

// answerRecords reads the answer section's CNAME and typ records.
func answerRecords(p *dnsmessage.Parser, typ dnsmessage.Type) ([]record, error) {
	var recs []record
	for {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			return recs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("upstream: bad dns answer: %w", err)
		}
		r := record{name: strings.ToLower(rh.Name.String()), ttl: rh.TTL}
		switch {
		case rh.Class == dnsmessage.ClassINET && rh.Type == dnsmessage.TypeCNAME:
			var c dnsmessage.CNAMEResource
			c, err = p.CNAMEResource()
			r.target = strings.ToLower(c.CNAME.String())
		case rh.Class == dnsmessage.ClassINET && rh.Type == typ && typ == dnsmessage.TypeA:
			var a dnsmessage.AResource
			a, err = p.AResource()
			r.addr = netip.AddrFrom4(a.A)
		case rh.Class == dnsmessage.ClassINET && rh.Type == typ && typ == dnsmessage.TypeAAAA:
			var a dnsmessage.AAAAResource
			a, err = p.AAAAResource()
			r.addr = netip.AddrFrom16(a.AAAA)
		default:
			if err := p.SkipAnswer(); err != nil {
				return nil, fmt.Errorf("upstream: bad dns answer: %w", err)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("upstream: bad dns answer: %w", err)
		}
		recs = append(recs, r)
	}
}

// follow walks the alias chain from name and returns the addresses at its
// end with the smallest TTL met on the way.
func follow(recs []record, name string) ([]netip.Addr, uint32, error) {
	var addrs []netip.Addr
	ttl := ^uint32(0)
	for hops := 0; ; hops++ {
		next := ""
		for _, r := range recs {
			if r.name != name {
				continue
			}
			switch {
			case r.addr.IsValid():
				addrs = append(addrs, r.addr)
				ttl = min(ttl, r.ttl)
			case next == "":
				next = r.target
				ttl = min(ttl, r.ttl)
			}
		}
		if len(addrs) > 0 || next == "" {
			break
		}
		if hops == maxCNAMEs {
			return nil, 0, errors.New("upstream: dns alias chain too long")
		}
		name = next
	}
	if len(addrs) == 0 {
		return nil, 0, nil
	}
	return addrs, ttl, nil
}

// parseResolvConf returns the nameservers of a resolv.conf, "ip:53" each,
// in order, at most three (as the C library uses).
func parseResolvConf(r io.Reader) []string {
	var servers []string
	sc := bufio.NewScanner(r)
	for sc.Scan() && len(servers) < 3 {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		ip, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		servers = append(servers, netip.AddrPortFrom(ip, 53).String())
	}
	return servers
}
