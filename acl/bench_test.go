package acl

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// benchList builds n random rules: mostly blocklist-style "host all" lines,
// some per listener, half IPv4 and half IPv6, prefix lengths spread out.
// It returns queries that mix addresses inside the rules with random ones.
func benchList(b *testing.B, n int) (*List, []netip.Addr) {
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	var text strings.Builder
	var queries []netip.Addr
	for i := range n {
		listener := "all"
		if i%10 == 0 {
			listener = []string{"web", "ftp", "rtb"}[rng.IntN(3)]
		}
		var prefix netip.Prefix
		if rng.IntN(2) == 0 {
			a := netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
			prefix = netip.PrefixFrom(a, 8+rng.IntN(25)).Masked()
		} else {
			var raw [16]byte
			for j := range raw {
				raw[j] = byte(rng.Uint32())
			}
			raw[0] = 0x20
			prefix = netip.PrefixFrom(netip.AddrFrom16(raw), 16+rng.IntN(113)).Masked()
		}
		fmt.Fprintf(&text, "%s %s %s %s\n", []string{"host", "tcp", "udp"}[rng.IntN(3)], listener,
			prefix, []string{"allow", "reject"}[rng.IntN(2)])
		if len(queries) < 4096 && i%3 == 0 {
			queries = append(queries, prefix.Addr())
		}
	}
	for len(queries) < 4096 {
		if rng.IntN(2) == 0 {
			queries = append(queries, netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}))
		} else {
			var raw [16]byte
			for j := range raw {
				raw[j] = byte(rng.Uint32())
			}
			raw[0] = 0x20
			queries = append(queries, netip.AddrFrom16(raw))
		}
	}
	rng.Shuffle(len(queries), func(i, j int) { queries[i], queries[j] = queries[j], queries[i] })
	l, err := Parse(strings.NewReader(text.String()), "bench.conf")
	if err != nil {
		b.Fatal(err)
	}
	return l, queries
}

func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 1000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			l, queries := benchList(b, n)
			listeners := []string{"web", "ftp", "rtb", "cms-http"}
			b.ReportAllocs()
			allowed := 0
			for i := 0; b.Loop(); i++ {
				if l.Decide(listeners[i&3], Proto(1+i&1), queries[i&4095]).Allow {
					allowed++
				}
			}
			if allowed < 0 {
				b.Log(allowed)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	text := randomFile(rng, 100_000)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := testOpts.Parse(strings.NewReader(text), "bench.conf"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGuard is the whole Admit hook over 1 000 rules: atomic load,
// Decide, counting, and for rejections the sampling (a clock read and a
// mutex; logging itself is off).
func BenchmarkGuard(b *testing.B) {
	var s Set
	l, queries := benchList(b, 1000)
	s.Store(l)
	admit := s.Guard("web", ProtoTCP, zerolog.Nop())
	var allowed, rejected []netip.AddrPort
	for _, q := range queries {
		if l.Decide("web", ProtoTCP, q).Allow {
			allowed = append(allowed, netip.AddrPortFrom(q, 1234))
		} else {
			rejected = append(rejected, netip.AddrPortFrom(q, 1234))
		}
	}
	for _, bb := range []struct {
		name    string
		clients []netip.AddrPort
	}{{"allow", allowed}, {"reject", rejected}} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				admit(bb.clients[i%len(bb.clients)])
			}
		})
	}
}
