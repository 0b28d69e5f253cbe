package forward

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
	"github.com/edgerelay/relay/limit"
)

// manySources connects once from each of n loopback addresses
// (127.4.x.y), a few at a time, and runs visit on each connection. It
// returns the first error.
func manySources(addr string, n int, visit func(net.Conn) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				err := oneSource(addr, i, visit)
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func oneSource(addr string, i int, visit func(net.Conn) error) error {
	src := net.IPv4(127, 4, byte(i>>8), byte(i))
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("dial from %s: %w", src, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := visit(c); err != nil {
		return fmt.Errorf("from %s: %w", src, err)
	}
	return nil
}

// echoLine sends a line and expects it back.
func echoLine(c net.Conn) error {
	if _, err := c.Write([]byte("hi\n")); err != nil {
		return err
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi\n" {
		return fmt.Errorf("echo %q: %v", buf, err)
	}
	return nil
}

// closedByRelay expects the relay to close the connection.
func closedByRelay(c net.Conn) error {
	if _, err := c.Read(make([]byte, 1)); err == nil {
		return fmt.Errorf("read data, want the relay's close")
	}
	return nil
}

// TestPerSourceTableEmptyAfterManySources: thousands of distinct client
// addresses come once each and leave, by every way a connection ends
// (relayed and closed by the client, upstream unreachable, closed before
// the dial, refused at max_conns); once they have gone the per-source
// table is empty, so an edge relay that a scan passes, or that weeks of
// clients on changing addresses reach, keeps nothing of them. A path that
// forgot its Release would pin its sources for good (limit never forgets
// a source holding a connection) and fill the table until every newcomer
// is refused as ErrFull.
func TestPerSourceTableEmptyAfterManySources(t *testing.T) {
	const n = 1000
	echo := func(t testing.TB) string { return world.NewBackend(t, world.Echo).Addr() }
	for _, tc := range []struct {
		name     string
		upstream func(testing.TB) string
		maxConns int
		visit    func(net.Conn) error
	}{
		{"relayed", echo, 0, echoLine},
		{"upstream unreachable", world.DeadAddr, 0, closedByRelay},
		{"client closes at once", echo, 0, func(net.Conn) error { return nil }},
		{"refused at max_conns", echo, 1, closedByRelay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			r := startRelay(t, Config{Upstreams: [][]string{{tc.upstream(t)}}, MaxConns: tc.maxConns,
				PerSource: limit.Config{MaxConns: 2}})
			if tc.maxConns > 0 { // one client holds the only place
				holder := dialFrom(t, "127.0.0.2", r.addr(0))
				if got := roundTrip(t, holder, "hold"); got != "hold" {
					t.Fatalf("holder's echo %q", got)
				}
			}
			if err := manySources(r.addr(0), n, tc.visit); err != nil {
				t.Fatal(err)
			}
			want := int64(0)
			if tc.maxConns > 0 {
				want = 1
			}
			world.Eventually(t, "the connections to end", func() bool { return r.Stats().Active.Load() == want })
			world.Eventually(t, "the per-source table to empty", func() bool { return r.limits.Len() == int(want) })
			if got := r.Stats().RejectedPerSource.Load(); got != 0 {
				t.Errorf("%d clients refused per source, want none: each came once", got)
			}
		})
	}
}
