package forward

import (
	"context"
	"io"
	"net"
	"os"
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
	// No connection before the test: its descriptors would be closed
	// asynchronously while the test holds the process at its limit.
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
	release := func() {
		for _, f := range filler {
			f.Close()
		}
		filler = nil
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved)
	}
	defer release()
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		filler = append(filler, f)
	}
	// One descriptor for the client; the relay's accept then has none.
	filler[len(filler)-1].Close()
	filler = filler[:len(filler)-1]
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
