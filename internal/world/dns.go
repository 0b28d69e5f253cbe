package world

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

// DNSServer is a DNS server on 127.0.0.1 that a test starts, so that no
// test ever asks the system's resolver. It answers A and AAAA queries from
// a table the test may change while it runs, and counts the queries.
type DNSServer struct {
	conn    net.PacketConn
	Queries atomic.Int64 // queries received
	done    chan struct{}

	mu    sync.Mutex // guards the following
	zones map[string]Zone
}

// Zone is the answer for one name; a name without one is NXDOMAIN.
type Zone struct {
	Addrs []netip.Addr
	TTL   uint32
	RCode dnsmessage.RCode // non-zero: answer with this failure
	CNAME string           // answer with an alias first, then Addrs under it
	Drop  bool             // do not answer at all
}

// NewDNSServer starts a DNSServer; tb.Cleanup stops it.
func NewDNSServer(tb testing.TB) *DNSServer {
	tb.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &DNSServer{conn: c, done: make(chan struct{}), zones: map[string]Zone{}}
	go s.serve()
	tb.Cleanup(func() {
		c.Close()
		<-s.done
	})
	return s
}

// Addr is the server's "127.0.0.1:port".
func (s *DNSServer) Addr() string { return s.conn.LocalAddr().String() }

// Set makes z the answer for name (written without the final dot).
func (s *DNSServer) Set(name string, z Zone) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zones[strings.ToLower(name)+"."] = z
}

func (s *DNSServer) serve() {
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
		s.Queries.Add(1)
		if reply := s.Answer(buf[:n]); reply != nil {
			_, _ = s.conn.WriteTo(reply, from)
		}
	}
}

// Answer builds the reply to query, or nil to stay silent.
func (s *DNSServer) Answer(query []byte) []byte {
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
	if z.Drop {
		return nil
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, RecursionAvailable: true}
	switch {
	case !ok:
		rh.RCode = dnsmessage.RCodeNameError
	case z.RCode != 0:
		rh.RCode = z.RCode
	}
	b := dnsmessage.NewBuilder(nil, rh)
	_ = b.StartQuestions()
	_ = b.Question(q)
	_ = b.StartAnswers()
	owner := q.Name
	if ok && z.RCode == 0 && z.CNAME != "" {
		target := dnsmessage.MustNewName(z.CNAME + ".")
		_ = b.CNAMEResource(dnsmessage.ResourceHeader{Name: owner, Class: dnsmessage.ClassINET, TTL: z.TTL},
			dnsmessage.CNAMEResource{CNAME: target})
		owner = target
	}
	for _, a := range z.Addrs {
		hdr := dnsmessage.ResourceHeader{Name: owner, Class: dnsmessage.ClassINET, TTL: z.TTL}
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
