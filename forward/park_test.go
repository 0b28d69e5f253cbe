//go:build linux

package forward

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
	"golang.org/x/sys/unix"
)

// parkedRelay starts a relay whose directions park as soon as they find
// nothing to read, with the given idle timeout.
func parkedRelay(t *testing.T, backend string, idle time.Duration) *relay {
	t.Helper()
	r := listenRelay(t, Config{Upstreams: [][]string{{backend}}, IdleTimeout: idle})
	if r.parker == nil {
		t.Fatal("listener has no parker")
	}
	r.parkAfter = 0
	r.serve(t)
	return r
}

// waitParked waits until n directions are parked and no goroutine of a
// pipe direction is left: a parked connection holds none.
func waitParked(t *testing.T, r *relay, n int64) {
	t.Helper()
	world.Eventually(t, fmt.Sprintf("%d directions parked", n), func() bool {
		return r.pool.Parked() == n && directionGoroutines() == 0
	})
}

// directionGoroutines counts the goroutines running a pipe direction.
func directionGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "forward.(*direction).runDetached")
}

// TestParkResume: an idle connection holds no goroutine; bytes sent to
// either side afterwards wake it, move intact, and are counted once.
func TestParkResume(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := parkedRelay(t, backend.Addr(), time.Minute)
	c := r.dial(t, 0)
	if got := roundTrip(t, c, "x"); got != "x" {
		t.Fatalf("echo %q", got)
	}
	waitParked(t, r, 2)
	const size = 1<<20 + 3 // past the small-read buffer: the resumed direction splices
	c.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		io.Copy(c, world.Stream(3, size))
	}()
	got, err := world.Hash(io.LimitReader(c, size))
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if want := world.StreamSum(3, size); got != want {
		t.Fatalf("echo %d bytes, want %d (or hash differs)", got.N, want.N)
	}
	waitParked(t, r, 2)
	c.Close()
	r.logs.Wait(t, `"end":"eof"`, fmt.Sprintf(`"bytes_in":%d`, size+1), fmt.Sprintf(`"bytes_out":%d`, size+1))
	world.Eventually(t, "nothing parked", func() bool { return r.pool.Parked() == 0 })
}

// TestParkIdleTimeout: a connection whose directions are both parked still
// ends at the idle timeout, with its access line.
func TestParkIdleTimeout(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	const idle = 300 * time.Millisecond
	r := parkedRelay(t, backend.Addr(), idle)
	c := r.dial(t, 0)
	start := time.Now()
	roundTrip(t, c, "x")
	waitParked(t, r, 2)
	expectClosed(t, c, 5*time.Second)
	if took := time.Since(start); took < idle-idle/8 {
		t.Errorf("closed after %v, idle timeout is %v", took, idle)
	}
	r.logs.Wait(t, `"end":"idle"`, `"bytes_in":1`, `"bytes_out":1`)
	if n := r.pool.Parked(); n != 0 {
		t.Errorf("%d directions still parked", n)
	}
}

// TestParkHalfClose: the client half-closes while both directions are
// parked; the backend reads EOF, answers, and the answer reaches the
// client whole before its EOF.
func TestParkHalfClose(t *testing.T) {
	halfCloseParked(t, func(r *relay) { waitParked(t, r, 2) })
}

// halfCloseParked runs the half-close of TestParkHalfClose on a pair
// that waitParked has seen parked (as it wants).
func halfCloseParked(t *testing.T, waitParked func(r *relay)) {
	checkLeaks(t)
	const replySize = 1<<20 + 5
	request := make(chan string, 1)
	backend := world.NewBackend(t, func(c net.Conn) {
		one := make([]byte, 1)
		io.ReadFull(c, one)
		c.Write(one)
		rest, _ := io.ReadAll(c)
		request <- string(one) + string(rest)
		io.Copy(c, world.Stream(9, replySize))
	})
	r := parkedRelay(t, backend.Addr(), time.Minute)
	c := r.dial(t, 0)
	roundTrip(t, c, "p")
	waitParked(r)
	io.WriteString(c, "rint this")
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	reply, err := world.Hash(c)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	if got := <-request; got != "print this" {
		t.Errorf("backend read %q", got)
	}
	if want := world.StreamSum(9, replySize); reply != want {
		t.Errorf("reply %d bytes, want %d (or hash differs)", reply.N, want.N)
	}
	r.logs.Wait(t, `"end":"eof"`, `"bytes_in":10`, fmt.Sprintf(`"bytes_out":%d`, replySize+1))
}

// TestParkShutdown: Shutdown past its grace ends parked connections (end
// shutdown) and returns with every goroutine gone; so does Close.
func TestParkShutdown(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := parkedRelay(t, backend.Addr(), time.Minute)
	c1, c2 := r.dial(t, 0), r.dial(t, 0)
	roundTrip(t, c1, "1")
	roundTrip(t, c2, "2")
	waitParked(t, r, 4)
	shutdownPastGrace(t, r, c1, c2)
	if n := r.pool.Parked(); n != 0 {
		t.Errorf("%d directions still parked", n)
	}
}

// shutdownPastGrace shuts r down with a grace its clients outlast and
// checks that each client is closed with an access line saying so.
func shutdownPastGrace(t *testing.T, r *relay, clients ...net.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := r.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want deadline exceeded", err)
	}
	for _, c := range clients {
		expectClosed(t, c, 5*time.Second)
	}
	if n := r.logs.Count(`"end":"shutdown"`); n != len(clients) {
		t.Errorf("%d access lines with end shutdown, want %d:\n%s", n, len(clients), r.logs.String())
	}
}

// TestParkManyShortConnections: connections that park and resume many
// times, in parallel, each get exactly their bytes back.
func TestParkManyShortConnections(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := parkedRelay(t, backend.Addr(), time.Minute)
	const conns, rounds = 20, 30
	errs := make(chan error, conns)
	for i := range conns {
		c := r.dial(t, 0)
		go func() {
			c.SetDeadline(time.Now().Add(20 * time.Second))
			for j := range rounds {
				msg := fmt.Sprintf("c%d-r%d;", i, j)
				if _, err := io.WriteString(c, msg); err != nil {
					errs <- err
					return
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
					errs <- fmt.Errorf("conn %d round %d: got %q, %v", i, j, got, err)
					return
				}
			}
			c.Close()
			errs <- nil
		}()
	}
	for range conns {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	r.logs.WaitCount(t, conns, `"end":"eof"`)
	world.Eventually(t, "nothing parked", func() bool { return r.pool.Parked() == 0 })
}

// TestLateKeepAlive: the upstream of a connection younger than parkAfter
// has no keepalive (three setsockopt calls spared); once the connection
// parks, it has the relay's keepalive.
func TestLateKeepAlive(t *testing.T) {
	checkLeaks(t)
	ups := make(chan netip.AddrPort, 2)
	backend := world.NewBackend(t, func(c net.Conn) {
		ups <- c.RemoteAddr().(*net.TCPAddr).AddrPort()
		world.Echo(c)
	})
	young := listenRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}})
	young.parkAfter = time.Hour
	young.serve(t)
	yc := young.dial(t, 0)
	roundTrip(t, yc, "y")
	if on, idle := upstreamSocketKeepAlive(t, <-ups); on != 0 {
		t.Errorf("young connection: SO_KEEPALIVE %d (idle %d), want off", on, idle)
	}
	yc.Close()
	young.logs.Wait(t, `"end":"eof"`) // its directions are gone: waitParked counts them
	old := parkedRelay(t, backend.Addr(), time.Minute)
	roundTrip(t, old.dial(t, 0), "o")
	waitParked(t, old, 2)
	if on, idle := upstreamSocketKeepAlive(t, <-ups); on != 1 || idle != int(keepAliveIdle/time.Second) {
		t.Errorf("parked connection: SO_KEEPALIVE %d, TCP_KEEPIDLE %d; want 1, %d", on, idle, int(keepAliveIdle/time.Second))
	}
}

// upstreamSocketKeepAlive finds this process's socket bound to local (the
// relay's end of an upstream connection) and reads its keepalive options.
func upstreamSocketKeepAlive(t *testing.T, local netip.AddrPort) (on, idle int) {
	t.Helper()
	found := false
	eachSocket(t, func(fd int) {
		if found || sockAddr(unix.Getsockname(fd)) != local {
			return
		}
		found = true
		on, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		idle, _ = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
	})
	if !found {
		t.Fatalf("no socket bound to %v", local)
	}
	return on, idle
}

// TestRawParkResume: an exclusive raw job that goes quiet parks (no
// goroutine) while it holds the printer, a second client waits its turn
// meanwhile; the first job's bytes, sent after the park, reach the
// printer whole, its job line counts them, and the turn then passes on.
func TestRawParkResume(t *testing.T) {
	checkLeaks(t)
	p := newPrinter(t, &printer{})
	r := listenRelay(t, Config{Name: "printer", Upstreams: [][]string{{p.Addr()}}, Raw: &Raw{Exclusive: true}})
	r.parkAfter = 0
	r.serve(t)
	first := r.dial(t, 0)
	if got := roundTrip(t, first, "\x05"); got != "\x06" {
		t.Fatalf("status answer %q", got)
	}
	waitParked(t, r, 2)
	second := r.dial(t, 0)
	world.Eventually(t, "second client queued", func() bool { return r.Stats().QueueLength.Load() == 1 })
	if n := r.pool.Parked(); n != 2 {
		t.Errorf("%d directions parked while a client waits, want 2", n)
	}
	jobs := [][]byte{markedJob(1, 1<<20), markedJob(2, 1<<10)}
	for i, c := range []*net.TCPConn{first, second} {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		go func() {
			c.Write(jobs[i])
			c.CloseWrite()
		}()
		if reply, err := io.ReadAll(c); err != nil || !strings.HasSuffix(string(reply), "\x06done") {
			t.Fatalf("client %d: reply %q, %v", i+1, reply, err)
		}
	}
	want := [][32]byte{sha256.Sum256(append([]byte{enq}, jobs[0]...)), sha256.Sum256(jobs[1])}
	p.mu.Lock()
	var got [][32]byte
	for _, job := range p.jobs {
		got = append(got, sha256.Sum256(job))
	}
	p.mu.Unlock()
	if !slices.Equal(got, want) {
		t.Errorf("printer got %d jobs not matching the clients' (in order)", len(got))
	}
	if m := p.maxActive.Load(); m != 1 {
		t.Errorf("printer saw %d connections at once", m)
	}
	r.logs.Wait(t, `"raw job done"`, `"end":"eof"`, fmt.Sprintf(`"bytes_in":%d`, len(jobs[0])+1))
	r.logs.Wait(t, `"raw job done"`, `"end":"eof"`, fmt.Sprintf(`"bytes_in":%d`, len(jobs[1])))
	world.Eventually(t, "nothing parked", func() bool { return r.pool.Parked() == 0 })
}

// TestParkerReleasesMemoryOncePerBurst: a burst of parks is followed by
// one release of free memory once parks stop, and the next burst's
// release waits for releaseEvery: it cannot run in a loop.
func TestParkerReleasesMemoryOncePerBurst(t *testing.T) {
	pk, err := newParker()
	if err != nil {
		t.Skip(err)
	}
	defer pk.close()
	var releases atomic.Int32
	pk.freeOSMemory = func() { releases.Add(1) }
	burst := func() time.Time {
		pk.mu.Lock()
		defer pk.mu.Unlock()
		for range releaseParks {
			pk.parkedLocked()
		}
		return pk.burst.due
	}
	start := time.Now()
	if due := burst(); due.Sub(start) < releaseQuiet || due.Sub(start) > releaseQuiet+time.Second {
		t.Errorf("first release due after %v, want %v", due.Sub(start), releaseQuiet)
	}
	world.Eventually(t, "one release", func() bool { return releases.Load() == 1 })
	if due := burst(); time.Until(due) < releaseEvery-releaseQuiet-time.Second {
		t.Errorf("second release due in %v, want about %v after the first", time.Until(due), releaseEvery)
	}
	if n := releases.Load(); n != 1 {
		t.Errorf("%d releases, want 1", n)
	}
}

// TestParkCrowded: with more directions running than crowdAt, a direction
// that finds nothing to read parks at once, long before parkAfter, and
// wakes with its bytes intact; uncrowded, a young one does not park.
func TestParkCrowded(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := listenRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}, IdleTimeout: time.Minute})
	r.parkAfter = time.Hour
	r.engineOnly() // a young connection parks crowded in the engine only
	r.serve(t)
	young := r.dial(t, 0)
	roundTrip(t, young, "y")
	if n := r.pool.Parked(); n != 0 {
		t.Fatalf("%d directions parked with parkAfter an hour away and no crowd", n)
	}
	young.Close()
	r.logs.Wait(t, `"end":"eof"`)
	r.parker.crowdAt.Store(0) // every running direction is one too many
	c := r.dial(t, 0)
	roundTrip(t, c, "x")
	world.Eventually(t, "the crowded connection parked", func() bool { return r.pool.Parked() == 2 })
	const size = 256<<10 + 1
	c.SetDeadline(time.Now().Add(20 * time.Second))
	go io.Copy(c, world.Stream(5, size))
	got, err := world.Hash(io.LimitReader(c, size))
	if err != nil || got != world.StreamSum(5, size) {
		t.Fatalf("echo after the park: %d bytes, %v", got.N, err)
	}
	c.Close()
	r.logs.WaitCount(t, 2, `"end":"eof"`)
	world.Eventually(t, "nothing parked or running", func() bool {
		return r.pool.Parked() == 0 && r.parker.running.Load() == 0
	})
}
