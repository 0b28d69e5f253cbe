package upstream

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/edgerelay/relay/internal/world"

	"golang.org/x/net/dns/dnsmessage"
)

// FuzzParseAnswer: no input crashes the parser, and what it returns holds
// together: addresses of the asked family, a TTL only with addresses.
func FuzzParseAnswer(f *testing.F) {
	srv := world.NewDNSServer(f)
	srv.Set("cms.test", world.Zone{Addrs: addrs("192.0.2.1", "2001:db8::1"), TTL: 30})
	srv.Set("www.test", world.Zone{CNAME: "cms.test", Addrs: addrs("192.0.2.2"), TTL: 5})
	srv.Set("bad.test", world.Zone{RCode: dnsmessage.RCodeServerFailure})
	for _, name := range []string{"cms.test.", "www.test.", "bad.test.", "nx.test."} {
		for _, typ := range []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA} {
			q, err := buildQuery(0x1234, dnsmessage.MustNewName(name), typ)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(srv.Answer(q), name, typ == dnsmessage.TypeA)
		}
	}
	f.Fuzz(func(t *testing.T, msg []byte, name string, v4 bool) {
		qname, err := fqdn(name)
		if err != nil {
			return
		}
		typ := dnsmessage.TypeAAAA
		if v4 {
			typ = dnsmessage.TypeA
		}
		got, ttl, err := parseAnswer(msg, 0x1234, qname, typ)
		if err != nil && (got != nil || ttl != 0) {
			t.Fatalf("error %v with answer %v ttl %d", err, got, ttl)
		}
		for _, a := range got {
			if a.Is4() != v4 {
				t.Fatalf("%v in an answer for %v", a, typ)
			}
		}
		if len(got) == 0 && ttl != 0 {
			t.Fatalf("ttl %d without addresses", ttl)
		}
	})
}

// FuzzParseResolvConf: whatever the file holds, the result is at most
// three nameservers, each an address on port 53.
func FuzzParseResolvConf(f *testing.F) {
	f.Add("nameserver 10.0.0.1\nnameserver ::1\n")
	f.Add("search lan\nnameserver fe80::1%eth0\noptions ndots:5\n")
	f.Add("nameserver\nnameserver 300.1.1.1\n#nameserver 1.1.1.1\n")
	f.Fuzz(func(t *testing.T, conf string) {
		servers := parseResolvConf(strings.NewReader(conf))
		if len(servers) > 3 {
			t.Fatalf("%d servers", len(servers))
		}
		for _, s := range servers {
			ap, err := netip.ParseAddrPort(s)
			if err != nil || ap.Port() != 53 {
				t.Fatalf("server %q: %v", s, err)
			}
		}
	})
}
