package upstream

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
	"github.com/pion/transport/v3/test"
	"github.com/rs/zerolog"
	"golang.org/x/net/dns/dnsmessage"
)

func checkLeaks(t *testing.T) { t.Cleanup(test.CheckRoutines(t)) }

func newResolver(t *testing.T, servers ...string) (*Resolver, *world.LogBuffer) {
	t.Helper()
	logs := &world.LogBuffer{}
	r := NewResolver(ResolverConfig{Servers: servers, Timeout: 300 * time.Millisecond, Log: zerolog.New(logs)})
	t.Cleanup(r.Close)
	return r, logs
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

// TestResolverHonoursTTL: an answer is used for its TTL without a query;
// once expired it is still served while a refresh runs, and the refresh's
// answer is served after it.
func TestResolverHonoursTTL(t *testing.T) {
	checkLeaks(t)
	dns := world.NewDNSServer(t)
	dns.Set("cms.venue.test", world.Zone{Addrs: addrs("192.0.2.1", "2001:db8::1", "192.0.2.2"), TTL: 60})
	r, _ := newResolver(t, dns.Addr())
	ans, err := r.Lookup("cms.venue.test")
	if err != nil {
		t.Fatal(err)
	}
	if want := addrs("192.0.2.1", "192.0.2.2", "2001:db8::1"); !slices.Equal(ans.Addrs, want) || ans.TTL != time.Minute {
		t.Fatalf("answer %v ttl %v, want %v (IPv4 first) ttl 1m", ans.Addrs, ans.TTL, want)
	}
	asked := dns.Queries.Load() // A and AAAA
	for range 10 {
		if again, _ := r.Lookup("cms.venue.test"); again != ans {
			t.Fatal("a cached answer was not reused")
		}
	}
	if n := dns.Queries.Load(); n != asked {
		t.Fatalf("%d queries within the TTL, want none", n-asked)
	}
	dns.Set("cms.venue.test", world.Zone{Addrs: addrs("192.0.2.9"), TTL: 60})
	r.skew.Add(int64(61 * time.Second))
	if stale, _ := r.Lookup("cms.venue.test"); stale != ans {
		t.Fatal("an expired answer was not served while refreshing")
	}
	world.Eventually(t, "the refreshed answer", func() bool {
		a, _ := r.Lookup("cms.venue.test")
		return slices.Equal(a.Addrs, addrs("192.0.2.9"))
	})
}

func TestClampTTL(t *testing.T) {
	for _, c := range []struct {
		ttl  uint32
		want time.Duration
	}{{0, MinTTL}, {1, MinTTL}, {30, 30 * time.Second}, {86400, MaxTTL}, {^uint32(0), MaxTTL}} {
		if got := clampTTL(c.ttl); got != c.want {
			t.Errorf("clampTTL(%d) = %v, want %v", c.ttl, got, c.want)
		}
	}
}

// TestResolverKeepsLastGoodAnswer: a name that stops resolving keeps its
// last answer; that is logged once, and once more when it resolves again.
func TestResolverKeepsLastGoodAnswer(t *testing.T) {
	checkLeaks(t)
	dns := world.NewDNSServer(t)
	dns.Set("printer.test", world.Zone{Addrs: addrs("192.0.2.7"), TTL: 10})
	r, logs := newResolver(t, dns.Addr())
	good, err := r.Lookup("printer.test")
	if err != nil {
		t.Fatal(err)
	}
	dns.Set("printer.test", world.Zone{RCode: dnsmessage.RCodeServerFailure})
	for round := 1; round <= 3; round++ {
		r.skew.Add(int64(MaxTTL))
		before := dns.Queries.Load()
		if a, err := r.Lookup("printer.test"); a != good || err != nil {
			t.Fatalf("round %d: %v %v, want the last good answer", round, a, err)
		}
		world.Eventually(t, "a refresh", func() bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return dns.Queries.Load() > before && r.names["printer.test"].inflight == nil
		})
	}
	if n := strings.Count(logs.String(), "keeping its last good answer"); n != 1 {
		t.Errorf("%d lines about the failing name, want 1:\n%s", n, logs)
	}
	dns.Set("printer.test", world.Zone{Addrs: addrs("192.0.2.8"), TTL: 10})
	r.skew.Add(int64(MaxTTL))
	r.Lookup("printer.test")
	world.Eventually(t, "the name resolving again", func() bool {
		a, _ := r.Lookup("printer.test")
		return slices.Equal(a.Addrs, addrs("192.0.2.8"))
	})
	if !strings.Contains(logs.String(), `"message":"upstream name resolves again"`) {
		t.Errorf("no line for the name resolving again:\n%s", logs)
	}
}

// TestResolverUnknownName: NXDOMAIN is an error, remembered for MinTTL so
// that connections meanwhile do not each ask again.
func TestResolverUnknownName(t *testing.T) {
	checkLeaks(t)
	dns := world.NewDNSServer(t)
	r, logs := newResolver(t, dns.Addr())
	if _, err := r.Lookup("nowhere.test"); !errors.Is(err, errNoSuchHost) {
		t.Fatalf("err %v, want no such host", err)
	}
	asked := dns.Queries.Load()
	if _, err := r.Lookup("nowhere.test"); !errors.Is(err, errNoSuchHost) {
		t.Fatalf("second lookup: %v", err)
	}
	if n := dns.Queries.Load(); n != asked {
		t.Errorf("%d queries within MinTTL of a failure, want none", n-asked)
	}
	if !strings.Contains(logs.String(), "upstream name does not resolve") {
		t.Errorf("the failure was not logged:\n%s", logs)
	}
}

// TestResolverCNAMEAndServerFailover: a dead first server is passed over,
// and an alias in the answer is followed.
func TestResolverCNAMEAndServerFailover(t *testing.T) {
	checkLeaks(t)
	dns := world.NewDNSServer(t)
	dns.Set("www.test", world.Zone{CNAME: "cms.test", Addrs: addrs("192.0.2.3"), TTL: 120})
	dead := world.NewDNSServer(t)
	dead.Set("www.test", world.Zone{Drop: true})
	r, _ := newResolver(t, dead.Addr(), dns.Addr())
	ans, err := r.Resolve(context.Background(), "www.test")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ans.Addrs, addrs("192.0.2.3")) || ans.TTL != 2*time.Minute {
		t.Errorf("answer %v ttl %v", ans.Addrs, ans.TTL)
	}
}

func TestParseResolvConf(t *testing.T) {
	in := "# comment\nsearch venue.lan\nnameserver 10.0.0.1\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:2\nnameserver ::1\nnameserver 10.0.0.4\n"
	got := parseResolvConf(strings.NewReader(in))
	want := []string{"10.0.0.1:53", "[fe80::1%eth0]:53", "[::1]:53"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
