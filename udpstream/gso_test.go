//go:build linux

package udpstream

import (
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestPlanWriteRuns(t *testing.T) {
	a := netip.MustParseAddrPort("127.0.0.2:5000")
	bb := netip.MustParseAddrPort("127.0.0.3:5000")
	for _, tc := range []struct {
		name  string
		sizes []int
		addrs []netip.AddrPort // nil: all a
		gso   bool
		want  []int // outEnd
	}{
		{"off", []int{1200, 1200, 1200}, nil, false, []int{1, 2, 3}},
		{"one run", []int{1200, 1200, 1200}, nil, true, []int{3}},
		{"size change, zero-length alone", []int{1200, 1200, 500, 500, 0, 0, 1200}, nil, true, []int{2, 4, 5, 6, 7}},
		{"destination change", []int{100, 100, 100, 100}, []netip.AddrPort{a, a, bb, bb}, true, []int{2, 4}},
		{"64 KiB cap", slices.Repeat([]int{1200}, 60), nil, true, []int{54, 60}},
		{"segment cap", slices.Repeat([]int{10}, 70), nil, true, []int{64, 70}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBatchPool(len(tc.sizes), 0).get()
			for i, n := range tc.sizes {
				b.msgs[i].buf = b.msgs[i].buf[:n]
				b.msgs[i].addr = a
				if tc.addrs != nil {
					b.msgs[i].addr = tc.addrs[i]
				}
			}
			c := &sysConn{}
			if tc.gso {
				c.gso.max.Store(gsoMaxBytes)
			}
			k := c.planWrite(b, 0, len(tc.sizes))
			if got := b.sys.outEnd[:k]; !slices.Equal(got, tc.want) {
				t.Fatalf("runs end at %v, want %v", got, tc.want)
			}
			for r := range k {
				h := &b.sys.out[r].Hdr
				start := 0
				if r > 0 {
					start = tc.want[r-1]
				}
				if int(h.Iovlen) != tc.want[r]-start || (h.Controllen != 0) != (h.Iovlen > 1) {
					t.Fatalf("header %d: %d iovecs, control %d", r, h.Iovlen, h.Controllen)
				}
			}
		})
	}
}

func TestGSORefusal(t *testing.T) {
	var g gsoState
	g.max.Store(gsoMaxBytes)
	if !g.refused(syscall.EINVAL, 9000) || g.limit() != 8999 {
		t.Fatalf("EINVAL at 9000: limit %d", g.limit())
	}
	if !g.refused(syscall.EINVAL, 9500) || g.limit() != 8999 {
		t.Fatalf("EINVAL at a larger size lowered the limit to %d", g.limit())
	}
	if g.refused(syscall.ECONNREFUSED, 1200) || g.limit() != 8999 {
		t.Fatal("ECONNREFUSED taken for a GSO refusal")
	}
	if !g.refused(syscall.EIO, 1200) || g.limit() != 0 {
		t.Fatalf("EIO left GSO on (limit %d)", g.limit())
	}
}

// Bursts of mixed sizes, sent in batches, come through intact both ways:
// runs of equal size go out as GSO writes where the kernel supports it.
func TestBursts(t *testing.T) {
	checkLeaks(t)
	w := newWorld(t, 1, nil)
	to := w.relay.Addrs()[0].(interface{ AddrPort() netip.AddrPort }).AddrPort()
	snd := newSender(t, "127.0.0.2", to, 0)
	sizes := []int{1200, 1200, 1200, 1200, 1000, 1000, 0, 1200, 1200, 1200, 1, 1200}
	want := map[string]int{} // "sha|len" → count
	const bursts = 20
	for burst := range bursts {
		for i, n := range sizes {
			m := &snd.b.msgs[i]
			m.buf = m.buf[:n]
			for k := range m.buf {
				m.buf[k] = byte(burst*31 + i*7 + k)
			}
			want[fmt.Sprintf("%s|%d", sha(m.buf), n)]++
		}
		if k, err := snd.conn.writeBatch(snd.b, 0, len(sizes)); err != nil || k != len(sizes) {
			t.Fatalf("burst %d: sent %d: %v", burst, k, err)
		}
		for range sizes {
			p, _, ok := readReply(t, snd)
			if !ok {
				t.Fatalf("burst %d: replies missing", burst)
			}
			info, err := parseEcho(p)
			if err != nil {
				t.Fatal(err)
			}
			want[fmt.Sprintf("%s|%d", info.sum, info.length)]--
		}
	}
	for k, n := range want {
		if n != 0 {
			t.Errorf("datagram %s: %+d (sent minus arrived)", k, n)
		}
	}
	st := w.relay.Stats()
	if got := st.DatagramsIn.Load(); got != bursts*uint64(len(sizes)) {
		t.Errorf("DatagramsIn = %d, want %d", got, bursts*len(sizes))
	}
}

// readReply reads one datagram on the sender's socket.
func readReply(t *testing.T, s *sender) ([]byte, netip.AddrPort, bool) {
	t.Helper()
	buf := make([]byte, msgBufSize)
	_ = s.conn.uc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := s.conn.uc.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, from, false
	}
	return buf[:n], from, true
}
