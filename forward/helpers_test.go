package forward

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
	"github.com/pion/transport/v3/test"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// relay is a Listener under test with its captured log.
type relay struct {
	*Listener
	logs   *world.LogBuffer
	served chan error
}

// startRelay listens with cfg (Listen defaults to one loopback port per
// upstream list), serves in the background and closes at cleanup.
func startRelay(t testing.TB, cfg Config) *relay {
	t.Helper()
	r := listenRelay(t, cfg)
	r.serve(t)
	return r
}

// listenRelay is startRelay without serving: a test may adjust the
// Listener before r.serve starts its goroutines.
func listenRelay(t testing.TB, cfg Config) *relay {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	if cfg.Listen == nil {
		for range cfg.Upstreams {
			cfg.Listen = append(cfg.Listen, "127.0.0.1:0")
		}
	}
	logs := &world.LogBuffer{}
	cfg.Log = zerolog.New(logs).Level(zerolog.DebugLevel)
	l, err := Listen(cfg)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	if env := os.Getenv("FORWARD_TEST_PARK_AFTER"); env != "" {
		// Run the suite with another park delay (0: every idle read parks).
		d, err := time.ParseDuration(env)
		if err != nil {
			t.Fatalf("FORWARD_TEST_PARK_AFTER: %v", err)
		}
		l.parkAfter = d
	}
	return &relay{Listener: l, logs: logs, served: make(chan error, 1)}
}

// engineOnly keeps the front out of r (call it before serve): for tests
// of what the engine does with a connection from its accept on.
func (r *relay) engineOnly() {
	r.useFront = false
	r.closeFrontFDs()
}

// listenSockets is how many descriptors of listen sockets r holds: one
// per port, and the front's duplicate.
func (r *relay) listenSockets() int {
	n := len(r.lns)
	if r.front != nil {
		n *= 2
	}
	return n
}

// serve runs Serve in the background until the test's cleanup closes r.
func (r *relay) serve(t testing.TB) {
	go func() { r.served <- r.Serve() }()
	t.Cleanup(func() {
		r.Close()
		if err := <-r.served; !errors.Is(err, ErrClosed) {
			t.Errorf("Serve returned %v, want ErrClosed", err)
		}
	})
}

// addr is the relay's address for port index.
func (r *relay) addr(index int) string { return r.Addrs()[index].String() }

// dial connects a client to port index of the relay.
func (r *relay) dial(t *testing.T, index int) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", r.addr(index))
	if err != nil {
		t.Fatalf("dial relay: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// accessKeys are the fields of every access line (README, "Access log").
var accessKeys = []string{"level", "listener", "listen", "client", "upstream", "bytes_in", "bytes_out", "end", "message"}

// expectClosed reads from c until EOF or an error and fails if that does
// not happen within limit, or if bytes arrive.
func expectClosed(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	n, err := c.Read(make([]byte, 1))
	if n != 0 {
		t.Fatalf("read %d bytes from a conn that should be closed", n)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("conn still open after %v", limit)
	}
	return time.Since(start)
}

// roundTrip writes msg and reads len(msg) bytes back.
func roundTrip(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(buf)
}

// checkLeaks fails the test if goroutines outlive it. Registered first, it
// runs after every other cleanup (relay and backends closed).
func checkLeaks(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
}

// sockopt is one integer socket option and the value a test wants.
type sockopt struct {
	name       string
	level, opt int
	want       int
}

// wantSockopts checks options of c's socket; where names the socket in
// failures.
func wantSockopts(t *testing.T, c net.Conn, where string, opts ...sockopt) {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		for _, o := range opts {
			if v, err := unix.GetsockoptInt(int(fd), o.level, o.opt); err != nil || v != o.want {
				t.Errorf("%s%s = %d, %v; want %d", o.name, where, v, err, o.want)
			}
		}
	})
}
