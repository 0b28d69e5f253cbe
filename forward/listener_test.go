package forward

import (
	"context"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// TestHandler: a Handler gets admitted connections with their port index,
// max_conns still applies, and its context ends on Close.
func TestHandler(t *testing.T) {
	checkLeaks(t)
	ended := make(chan struct{}, 4)
	h := HandlerFunc(func(ctx context.Context, c *net.TCPConn, index int) {
		defer c.Close()
		io.WriteString(c, []string{"port0", "port1"}[index])
		<-ctx.Done()
		ended <- struct{}{}
	})
	r := startRelay(t, Config{Listen: []string{"127.0.0.1:0", "127.0.0.1:0"}, Handler: h, MaxConns: 2})
	for i, want := range []string{"port0", "port1"} {
		c := r.dial(t, i)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, len(want))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != want {
			t.Errorf("port %d: %q, %v", i, buf, err)
		}
	}
	expectClosed(t, r.dial(t, 0), 2*time.Second)
	if n := r.Stats().Refused.Load(); n != 1 {
		t.Errorf("Refused = %d", n)
	}
	r.Close()
	for range 2 {
		<-ended
	}
}

// TestAcceptBackoff runs the process out of descriptors: accept fails
// with EMFILE, the loop backs off instead of spinning, and the waiting
// client is served once descriptors are free again.
func TestAcceptBackoff(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("relay log:\n%s", r.logs.String())
		}
	})
	<-r.Started()
	// No connection before the test: its descriptors would be closed
	// asynchronously while the test holds the process at its limit.
	release := exhaustDescriptors(t, 1) // one for the client; the relay's accept then has none
	c, err := net.Dial("tcp", r.addr(0))
	if err != nil {
		t.Fatalf("dial with one descriptor left: %v", err)
	}
	defer c.Close()
	r.logs.Wait(t, "accept failed, backing off", "too many open files")

	cpu0 := processCPU()
	time.Sleep(400 * time.Millisecond)
	if used := processCPU() - cpu0; used > 200*time.Millisecond {
		t.Errorf("process used %v CPU in 400ms of EMFILE: the accept loop spins", used)
	}
	release()
	if got := roundTrip(t, c, "after"); got != "after" {
		t.Errorf("echo after the back-off: %q", got)
	}
}

// TestFrontShortOfDescriptors: the relay accepts with the process's last
// descriptor and has none for the upstream's socket. The client is closed
// with a line that blames the relay, the upstream stays up, and once
// descriptors are free the next client goes to the same upstream.
func TestFrontShortOfDescriptors(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}})
	<-r.Started()
	release := exhaustDescriptors(t, 2) // the client's and the relay's accept
	c, err := net.Dial("tcp", r.addr(0))
	if err != nil {
		t.Fatalf("dial with two descriptors left: %v", err)
	}
	defer c.Close()
	expectClosed(t, c, 5*time.Second)
	r.logs.Wait(t, `"message":"relay out of descriptors, buffers or ports, client closed"`, "too many open files")
	release()
	if got := roundTrip(t, r.dial(t, 0), "again"); got != "again" {
		t.Errorf("echo after the shortage: %q", got)
	}
	if strings.Contains(r.logs.String(), "upstream down") {
		t.Errorf("the shortage marked the upstream down:\n%s", r.logs)
	}
}

// exhaustDescriptors lowers the process's descriptor limit and takes every
// descriptor below it but spare; release (also at cleanup) gives them back.
func exhaustDescriptors(t *testing.T, spare int) (release func()) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skip(err)
	}
	saved := lim
	lim.Cur = 256
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skip(err)
	}
	var filler []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		filler = append(filler, f)
	}
	if len(filler) < spare {
		t.Fatalf("only %d descriptors free below %d", len(filler), lim.Cur)
	}
	for _, f := range filler[len(filler)-spare:] {
		f.Close()
	}
	filler = filler[:len(filler)-spare]
	// The limit goes back up first, in one call, so that everything
	// waiting for a descriptor gets all it needs at once.
	release = func() {
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved)
		for _, f := range filler {
			f.Close()
		}
		filler = nil
	}
	t.Cleanup(release)
	return release
}

// TestServeTakesNoDescriptor: what the front needs is made by Listen, so
// a Serve that starts while the process is out of descriptors (a reload
// under load) still serves through the front. It once made the front in
// Serve: out of descriptors it fell back to the engine without a word,
// and freed the front's duplicate of the listen socket for a stray
// accept to take (TestAcceptBackoff's flake).
func TestServeTakesNoDescriptor(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := listenRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}})
	if !r.useFront {
		t.Skip("no front on this system")
	}
	release := exhaustDescriptors(t, 0)
	r.serve(t)
	<-r.Started()
	release()
	if r.front == nil {
		t.Errorf("Serve out of descriptors left the front")
	}
	c := r.dial(t, 0)
	if got := roundTrip(t, c, "served"); got != "served" {
		t.Errorf("echo: %q", got)
	}
	if strings.Contains(r.logs.String(), "front unavailable") {
		t.Errorf("front unavailable:\n%s", r.logs)
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestIdleWorkersBounded: after 24 connections held by a Handler at once
// have ended, at most maxIdleWorkers connection workers stay waiting, and
// they serve the next connections.
func TestIdleWorkersBounded(t *testing.T) {
	checkLeaks(t)
	const n = 24
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, c *net.TCPConn, index int) {
		defer c.Close()
		io.WriteString(c, "hi")
		select {
		case <-release:
		case <-ctx.Done():
		}
	})
	r := startRelay(t, Config{Listen: []string{"127.0.0.1:0"}, Handler: h})
	greet := func(c net.Conn) {
		t.Helper()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
			t.Fatalf("greeting %q, %v", buf, err)
		}
	}
	for range n {
		greet(r.dial(t, 0))
	}
	close(release)
	world.Eventually(t, "idle workers at the bound", func() bool {
		return r.idleWork.Load() == maxIdleWorkers && r.Stats().Active.Load() == 0
	})
	greet(r.dial(t, 0))
	if got := r.Stats().Accepted.Load(); got != n+1 {
		t.Errorf("Accepted = %d, want %d", got, n+1)
	}
}
