package upstream

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsServer is a DNS server on 127.0.0.1 that the tests start, so no test
// ever asks the system's resolver. It answers A and AAAA queries from a
// table the test changes while it runs.
type dnsServer struct {
	conn    net.PacketConn
	queries atomic.Int64
	done    chan struct{}

	mu    sync.Mutex // guards the following
	zones map[string]zone
}

// zone is the answer for one name.
type zone struct {
	addrs []netip.Addr
	ttl   uint32
	rcode dnsmessage.RCode // non-zero: answer with this failure
	cname string           // answer with an alias first, then addrs under it
	drop  bool             // do not answer at all
}

func newDNSServer(t *testing.T) *dnsServer {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{conn: c, done: make(chan struct{}), zones: map[string]zone{}}
	go s.serve()
	t.Cleanup(func() {
		c.Close()
		<-s.done
	})
	return s
}

func (s *dnsServer) addr() string { return s.conn.LocalAddr().String() }

func (s *dnsServer) set(name string, z zone) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zones[strings.ToLower(name)+"."] = z
}

func (s *dnsServer) serve() {
	defer close(s.done)
	buf := make([]byte, 512)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		s.queries.Add(1)
		if reply := s.answer(buf[:n]); reply != nil {
			_, _ = s.conn.WriteTo(reply, from)
		}
	}
}

// answer builds the reply to query, or nil to stay silent.
func (s *dnsServer) answer(query []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	s.mu.Lock()
	z, ok := s.zones[strings.ToLower(q.Name.String())]
	s.mu.Unlock()
	if z.drop {
		return nil
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, RecursionAvailable: true}
	switch {
	case !ok:
		rh.RCode = dnsmessage.RCodeNameError
	case z.rcode != 0:
		rh.RCode = z.rcode
	}
	b := dnsmessage.NewBuilder(nil, rh)
	_ = b.StartQuestions()
	_ = b.Question(q)
	_ = b.StartAnswers()
	owner := q.Name
	if ok && z.rcode == 0 && z.cname != "" {
		target := dnsmessage.MustNewName(z.cname + ".")
		_ = b.CNAMEResource(dnsmessage.ResourceHeader{Name: owner, Class: dnsmessage.ClassINET, TTL: z.ttl},
			dnsmessage.CNAMEResource{CNAME: target})
		owner = target
	}
	for _, a := range z.addrs {
		hdr := dnsmessage.ResourceHeader{Name: owner, Class: dnsmessage.ClassINET, TTL: z.ttl}
		switch {
		case a.Is4() && q.Type == dnsmessage.TypeA:
			_ = b.AResource(hdr, dnsmessage.AResource{A: a.As4()})
		case a.Is6() && q.Type == dnsmessage.TypeAAAA:
			_ = b.AAAAResource(hdr, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
	}
	msg, err := b.Finish()
	if err != nil {
		return nil
	}
	return msg
}
