package udpstream

import (
	"context"
	"errors"
	"math"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	testworld "github.com/edgerelay/relay/internal/world"
)

// Shutdown refuses new sources and serves the open sessions, lets them run
// until they expire, then returns; with a short context it cuts them.
func TestShutdown(t *testing.T) {
	checkLeaks(t)
	// The checks that need a session alive run with the default timeout,
	// and the context ends the drain: with a 100 ms timeout, a pause of the
	// busy test process between two steps let the session expire and the
	// relay close before the late source's datagram was read (1 of 10 runs
	// of the package at load 14, 'waiting for Drops.Draining').
	t.Run("refuses new sources", func(t *testing.T) {
		w := newWorld(t, 1, nil)
		to := w.port(0)
		c := newClient(t, "127.0.0.2")
		c.exchange(to, []byte("before"))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- w.relay.Shutdown(ctx) }()
		waitDraining(t, w.relay)
		c.exchange(to, []byte("open session still served"))
		late := newClient(t, "127.0.0.3")
		late.send(to, []byte("new"))
		waitStat(t, "Drops.Draining", w.relay.Stats().Drops.Draining.Load, 1)
		if n := w.relay.Stats().SessionsCreated.Load(); n != 1 {
			t.Errorf("SessionsCreated = %d, want 1", n)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Shutdown = %v, want context canceled", err)
		}
	})
	t.Run("drains", func(t *testing.T) {
		w := newWorld(t, 1, func(c *Config) { c.SessionTimeout = 100 * time.Millisecond })
		c := newClient(t, "127.0.0.2")
		c.exchange(w.port(0), []byte("before"))
		ctx, cancel := context.WithTimeout(context.Background(), testworld.WaitLimit)
		defer cancel()
		if err := w.relay.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
		if n := w.logs.Count(`"end":"idle"`); n != 1 {
			t.Errorf("want the session to end idle:\n%s", w.logs)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		w := newWorld(t, 1, nil)
		c := newClient(t, "127.0.0.2")
		c.exchange(w.port(0), []byte("before"))
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := w.relay.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want deadline exceeded", err)
		}
		if n := w.logs.Count(`"end":"shutdown"`); n != 1 {
			t.Errorf("want the session cut at shutdown:\n%s", w.logs)
		}
		if err := w.relay.Serve(); !errors.Is(err, ErrClosed) {
			t.Errorf("Serve after Shutdown = %v", err)
		}
		if err := w.relay.Close(); err != nil {
			t.Errorf("second Close = %v", err)
		}
	})
}

func waitDraining(t *testing.T, r *Relay) {
	t.Helper()
	waitStat(t, "draining", func() uint64 {
		if r.draining.Load() {
			return 1
		}
		return 0
	}, 1)
}

func TestListenErrors(t *testing.T) {
	busy, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no listen", Config{}, "no listen address"},
		{"length mismatch", Config{Listen: []string{"127.0.0.1:0"}}, "1 listen addresses but 0 upstream lists"},
		{"empty list", Config{Listen: []string{"127.0.0.1:0"}, Upstreams: [][]string{{}}}, "no upstream for"},
		{"bad upstream", Config{Listen: []string{"127.0.0.1:0"}, Upstreams: [][]string{{"127.0.0.1"}}}, `upstream "127.0.0.1"`},
		{"port taken", Config{Listen: []string{"127.0.0.1:0", busy.LocalAddr().String()},
			Upstreams: [][]string{{"127.0.0.1:9"}, {"127.0.0.1:9"}}}, "listen udp4 " + busy.LocalAddr().String() + ": bind: address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Listen(tc.cfg)
			if err == nil {
				_ = r.Close()
				t.Fatal("Listen succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "udpstream: ") {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
			if addr := busy.LocalAddr().String(); strings.Count(err.Error(), addr) > 1 {
				t.Fatalf("error %q names %s twice", err, addr)
			}
		})
	}
}

// Close before Serve: Serve returns ErrClosed at once, nothing leaks.
func TestCloseBeforeServe(t *testing.T) {
	checkLeaks(t)
	r, err := Listen(Config{Listen: []string{"127.0.0.1:0"}, Upstreams: [][]string{{"127.0.0.1:9"}}})
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Close()
	_ = r.Close()
	if err := r.Serve(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve = %v", err)
	}
}

// A dual-stack listener ("[::]:port") serves IPv4 clients as IPv4 (Admit and
// the log see 127.0.0.2, not ::ffff:127.0.0.2) and IPv6 clients as IPv6.
func TestDualStackListener(t *testing.T) {
	checkLeaks(t)
	b := startBackend(t, "b0")
	logs := &testworld.LogBuffer{}
	var seen []netip.AddrPort
	var mu sync.Mutex
	r, err := Listen(Config{
		Name: "dual", Listen: []string{"[::]:0"}, Upstreams: [][]string{{b.addr().String()}},
		Admit: func(ap netip.AddrPort) bool { mu.Lock(); seen = append(seen, ap); mu.Unlock(); return true },
		Log:   zerolog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve() }()
	defer func() { _ = r.Close(); <-served }()
	port := r.Addrs()[0].(*net.UDPAddr).Port

	c4 := newClient(t, "127.0.0.2")
	c4.exchange(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}, []byte("v4"))
	if c6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err == nil {
		c := &client{t: t, conn: c6}
		t.Cleanup(func() { _ = c6.Close() })
		c.exchange(&net.UDPAddr{IP: net.IPv6loopback, Port: port}, []byte("v6"))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 || seen[0] != c4.addr() {
		t.Fatalf("Admit saw %v, want %s first", seen, c4.addr())
	}
	for _, ap := range seen[1:] {
		if ap.Addr() != netip.IPv6Loopback() {
			t.Errorf("Admit saw %s, want ::1", ap)
		}
	}
}

// A buffer request the kernel caps is reported once, naming the sysctls.
// Root may pass the sysctl caps (SO_RCVBUFFORCE), but not INT_MAX/2.
func TestBufferCapWarning(t *testing.T) {
	logs := &testworld.LogBuffer{}
	r, err := Listen(Config{
		Name: "rtb", Listen: []string{"127.0.0.1:0", "127.0.0.1:0"}, Upstreams: [][]string{{"127.0.0.1:9"}, {"127.0.0.1:9"}},
		ReadBuffer: math.MaxInt32, Log: zerolog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if n := logs.Count("net.core.rmem_max", `"read_buffer_wanted":2147483647`); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, logs)
	}
}
