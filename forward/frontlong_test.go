//go:build linux

package forward

// Continued from front_test.go: connections that outlive parkAfter, the
// idle timeout across it, Close with connections open, and a reload's
// handover of the listen socket.

import (
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// TestFrontLongAfterIdle: a connection quiet for longer than parkAfter
// then moves 8 MiB each way at once, intact and counted.
func TestFrontLongAfterIdle(t *testing.T) {
	checkFrontLeaks(t)
	const size = 8 << 20
	got := make(chan world.Sum, 1)
	backend := world.NewBackend(t, func(c net.Conn) {
		one := make([]byte, 1)
		io.ReadFull(c, one)
		c.Write(one)
		io.ReadFull(c, one) // the client is back from its quiet time
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			io.Copy(c, world.Stream(2, size))
			c.(*net.TCPConn).CloseWrite()
		}()
		s, err := world.Hash(c)
		if err != nil {
			s.N = -1
		}
		got <- s
		<-sent
	})
	r := listenRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}, IdleTimeout: time.Minute})
	r.parkAfter = 100 * time.Millisecond
	r.serve(t)
	c := r.dial(t, 0)
	roundTrip(t, c, "x")
	waitParked(t, r, 2) // the parker took it: quiet for parkAfter
	c.SetDeadline(time.Now().Add(world.WaitLimit))
	sent := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, io.MultiReader(strings.NewReader("g"), world.Stream(1, size)))
		c.CloseWrite()
		sent <- err
	}()
	back, err := world.Hash(c)
	if err := <-sent; err != nil {
		t.Fatalf("client send: %v", err)
	}
	if want := world.StreamSum(2, size); err != nil || back != want {
		t.Errorf("client got %d bytes, %v; want %d (or hash differs)", back.N, err, want.N)
	}
	if s, want := await(t, got, "the upstream's EOF"), world.StreamSum(1, size); s != want {
		t.Errorf("upstream got %d bytes, want %d (or hash differs)", s.N, want.N)
	}
	f := closedLines(t, r, 1, EndEOF)[0]
	if f["bytes_in"] != float64(size+2) || f["bytes_out"] != float64(size+1) {
		t.Errorf("access line %v", f)
	}
	if st := r.Stats(); st.BytesIn.Load() != size+2 || st.BytesOut.Load() != size+1 {
		t.Errorf("stats in=%d out=%d", st.BytesIn.Load(), st.BytesOut.Load())
	}
}

// TestFrontIdleAcrossParkAfter: the idle timeout counts from the last
// byte, not from the moment the connection outlived parkAfter: a
// connection quiet since its first exchange ends at the idle timeout.
func TestFrontIdleAcrossParkAfter(t *testing.T) {
	checkFrontLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	const idle, parkAfter = 800 * time.Millisecond, 600 * time.Millisecond
	r := listenRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}, IdleTimeout: idle})
	r.parkAfter = parkAfter
	r.serve(t)
	c := r.dial(t, 0)
	roundTrip(t, c, "x")
	took := expectClosed(t, c, 5*time.Second)
	// Restarting the idle clock at parkAfter would close it near
	// idle+parkAfter (1.4 s); half of parkAfter is the margin for a busy
	// machine.
	t.Logf("closed after %v of quiet", took)
	if took < idle-idle/8 || took > idle+parkAfter/2 {
		t.Errorf("closed after %v of quiet, idle timeout is %v", took, idle)
	}
	f := closedLines(t, r, 1, EndIdle)[0]
	if f["bytes_in"] != float64(1) || f["bytes_out"] != float64(1) {
		t.Errorf("access line %v", f)
	}
}

// TestFrontClose: Close ends every open connection, young or parked, and
// one moving bytes, each with an end=shutdown line carrying its counts;
// the streaming client got exactly the bytes its line counts.
func TestFrontClose(t *testing.T) {
	for _, tc := range []struct {
		name      string
		parkAfter time.Duration
	}{{"young", time.Hour}, {"parked", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			checkFrontLeaks(t)
			echo := world.NewBackend(t, world.Echo)
			stream := world.NewBackend(t, func(c net.Conn) { io.Copy(c, world.Stream(3, 1<<40)) })
			r := listenRelay(t, Config{Upstreams: [][]string{{echo.Addr()}, {stream.Addr()}}})
			r.parkAfter = tc.parkAfter
			r.serve(t)
			sent := map[string]int{} // client address -> bytes each way
			var clients []net.Conn
			for i := range 3 {
				c := r.dial(t, 0)
				roundTrip(t, c, strings.Repeat("a", i+1))
				sent[c.LocalAddr().String()] = i + 1
				clients = append(clients, c)
			}
			if tc.parkAfter == 0 {
				waitParked(t, r, 6)
			}
			s := r.dial(t, 1)
			s.SetDeadline(time.Now().Add(world.WaitLimit))
			if _, err := io.ReadFull(s, make([]byte, 1<<20)); err != nil {
				t.Fatalf("stream: %v", err)
			}
			streamed := make(chan int64, 1)
			go func() {
				n, _ := io.Copy(io.Discard, s)
				streamed <- 1<<20 + n
			}()
			r.Close()
			if n := r.Stats().Active.Load(); n != 0 {
				t.Errorf("Active = %d after Close", n)
			}
			for _, c := range clients {
				expectClosed(t, c, time.Second)
			}
			n := <-streamed
			for _, f := range closedLines(t, r, 4, EndShutdown) {
				if f["upstream"] == stream.Addr() {
					if f["bytes_out"] != float64(n) || f["bytes_in"] != float64(0) {
						t.Errorf("streaming client read %d bytes; access line %v", n, f)
					}
					continue
				}
				if k := sent[f["client"].(string)]; k == 0 || f["bytes_in"] != float64(k) || f["bytes_out"] != float64(k) {
					t.Errorf("access line %v, client sent %d", f, k)
				}
			}
		})
	}
}

// TestFrontHandover: a reload hands the listen socket to a second
// Listener (Files, Inherit) and stops the first while clients keep
// connecting: none is refused or reset, every echo is intact, each
// connection is served by one of the two, and the first drains.
func TestFrontHandover(t *testing.T) {
	checkFrontLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	a := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}})
	addr := a.addr(0)
	const clients, perClient = 4, 500 // bounds the loop; it stops much sooner
	var done atomic.Int64
	stop := make(chan struct{})
	errs := make(chan error, clients)
	for w := range clients {
		go func() {
			for i := range perClient {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				seed := uint64(w*perClient + i)
				if _, err := echoOnce(addr, seed, 1+int64(seed*7919%(16<<10))); err != nil {
					errs <- err
					return
				}
				done.Add(1)
			}
			errs <- nil
		}()
	}
	reach := func(what string, n int64, more func() bool) {
		world.Eventually(t, what, func() bool { return len(errs) > 0 || done.Load() >= n && more() })
	}
	reach("50 connections before the reload", 50, func() bool { return true })
	files, err := a.Files()
	if err != nil {
		t.Fatal(err)
	}
	b := listenRelay(t, Config{Listen: []string{addr}, Upstreams: [][]string{{backend.Addr()}}, Inherit: files})
	files[0].Close()
	b.serve(t)
	<-b.Started()
	a.StopAccepting()
	reach("50 connections after the reload", done.Load()+50, func() bool { return b.Stats().Accepted.Load() >= 50 })
	close(stop)
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), world.WaitLimit)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown of the retired listener: %v", err)
	}
	total := uint64(done.Load())
	na, nb := a.Stats().Accepted.Load(), b.Stats().Accepted.Load()
	if na+nb != total {
		t.Errorf("accepted %d + %d, want %d connections", na, nb, total)
	}
	t.Logf("%d connections served by the first listener, %d by its successor", na, nb)
	closedLines(t, a, int(na), EndEOF)
	closedLines(t, b, int(nb), EndEOF)
	if n := strings.Count(a.logs.String()+b.logs.String(), "\n"); uint64(n) != total {
		t.Errorf("%d log lines for %d connections:\n%s%s", n, total, a.logs.String(), b.logs.String())
	}
}
