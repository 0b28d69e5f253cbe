// Package world is the loopback fixture of the end-to-end tests: client ->
// relay -> backend, all on 127.0.0.1. It provides backends (a TCP server
// with a handler per connection), deterministic byte streams with their
// SHA-256, an address nobody listens on, a goroutine-safe log buffer whose
// waiters wake on each write (LogBuffer.Wait), and Eventually for state
// that changes with no event to wait on. It starts no relay: each package's tests build the relay they test.
//
// Handlers run in goroutines the Backend owns; they must not call t.Fatal,
// so they report what they saw through channels or the Backend's records.
package world

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Backend is a TCP server on 127.0.0.1 that runs handle for each
// connection. Close (also run by tb.Cleanup) closes the listener and every
// open connection and waits for the handlers.
type Backend struct {
	ln       net.Listener
	handle   func(net.Conn)
	accepted atomic.Int64
	wg       sync.WaitGroup

	mu     sync.Mutex // guards the following
	conns  map[net.Conn]struct{}
	closed bool
}

// NewBackend starts a backend on a free loopback port.
func NewBackend(tb testing.TB, handle func(net.Conn)) *Backend {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("world: backend listen: %v", err)
	}
	return serveBackend(tb, ln, handle)
}

// ServeOn runs a Backend on ln, a listener the test opened itself (an
// address NewBackend does not pick, such as a link-local one).
func ServeOn(tb testing.TB, ln net.Listener, handle func(net.Conn)) *Backend {
	tb.Helper()
	return serveBackend(tb, ln, handle)
}

// serveBackend runs a Backend on ln.
func serveBackend(tb testing.TB, ln net.Listener, handle func(net.Conn)) *Backend {
	b := &Backend{ln: ln, handle: handle, conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go b.serve()
	tb.Cleanup(b.Close)
	return b
}

func (b *Backend) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// EMFILE and friends: tests that exhaust descriptors must
			// not stop the backend for good.
			time.Sleep(5 * time.Millisecond)
			continue
		}
		b.accepted.Add(1)
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			c.Close()
			return
		}
		b.conns[c] = struct{}{}
		b.wg.Add(1)
		b.mu.Unlock()
		go b.run(c)
	}
}

func (b *Backend) run(c net.Conn) {
	defer b.wg.Done()
	defer func() {
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
		c.Close()
	}()
	b.handle(c)
}

// Addr is the backend's "127.0.0.1:port".
func (b *Backend) Addr() string { return b.ln.Addr().String() }

// Accepted counts the connections the backend has accepted.
func (b *Backend) Accepted() int { return int(b.accepted.Load()) }

// Close stops the backend; it is idempotent.
func (b *Backend) Close() {
	b.mu.Lock()
	b.closed = true
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.ln.Close()
	b.wg.Wait()
}

// Echo writes back what it reads until EOF, then half-closes.
func Echo(c net.Conn) {
	io.Copy(c, c)
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// Stream returns n deterministic pseudo-random bytes for seed; the same
// seed and n always give the same bytes, so both ends can agree on a hash.
func Stream(seed uint64, n int64) io.Reader {
	return io.LimitReader(&randReader{r: rand.NewChaCha8(seedBytes(seed))}, n)
}

type randReader struct{ r *rand.ChaCha8 }

func (r *randReader) Read(p []byte) (int, error) { return r.r.Read(p) }

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return s
}

// Sum is the length and SHA-256 of a byte stream.
type Sum struct {
	N   int64
	SHA [sha256.Size]byte
}

// Hash reads r to EOF and returns its Sum; err is the read error, if any
// (io.EOF is not an error).
func Hash(r io.Reader) (Sum, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	var s Sum
	s.N = n
	copy(s.SHA[:], h.Sum(nil))
	return s, err
}

// StreamSum is the Sum of Stream(seed, n).
func StreamSum(seed uint64, n int64) Sum {
	s, _ := Hash(Stream(seed, n))
	return s
}

// DeadAddr returns a loopback address where nothing listens, so
// connecting is refused at once, for as long as the test runs. The port
// is a reserved one (ReserveTCPPort): a port bound on 0 and closed, as
// this did before, could come back from the next call (two "different"
// dead upstreams on one address), or be taken by another test binary's
// listener on port 0 meanwhile, and a dial to it then hung instead of
// being refused (TestEveryUpstreamDown failed both ways under load).
func DeadAddr(tb testing.TB) string {
	tb.Helper()
	return fmt.Sprintf("127.0.0.1:%d", ReserveTCPPort(tb))
}

// ReserveTCPPort returns a loopback TCP port that was free a moment ago and
// that no other call returns while the test runs, for relays that must bind
// by number (a config rendered twice for a reload). The relay binds without
// SO_REUSEPORT, so the port cannot be held for it; instead it is picked at
// random from reservedPorts, below the kernel's ephemeral range (32768 and
// up by default), where neither bind(port 0) nor outgoing connections take
// ports, and claimed with a lock file that other test binaries respect
// (see claimPort).
func ReserveTCPPort(tb testing.TB) int {
	tb.Helper()
	return ReserveTCPPortRun(tb, 1)
}

// ReserveTCPPortRun is ReserveTCPPort for n consecutive ports, such as an
// FTP listener's data ports, and returns the first. Every port of the run
// is claimed: a run whose first port alone was reserved let another test
// take a port inside it, and the relay, which binds its data ports at
// start, then exited before it served.
func ReserveTCPPortRun(tb testing.TB, n int) int {
	tb.Helper()
	return reserveRun(tb, "tcp", n)
}

// ReserveUDPPort is ReserveTCPPort for a UDP port. A port that a socket
// bound to port 0 was given and closed again is no reservation: it is in
// the ephemeral range, where the next UDP socket of any test binary may
// get it before the relay binds it.
func ReserveUDPPort(tb testing.TB) int {
	tb.Helper()
	return reserveRun(tb, "udp", 1)
}

// ReserveUDPPortRun is ReserveUDPPort for n consecutive ports, such as a
// UDP listener's port range, and returns the first.
func ReserveUDPPortRun(tb testing.TB, n int) int {
	tb.Helper()
	return reserveRun(tb, "udp", n)
}

func reserveRun(tb testing.TB, network string, n int) int {
	tb.Helper()
	for range 100 {
		first := reservedPorts[0] + rand.IntN(reservedPorts[1]-reservedPorts[0]-n)
		if claimRun(tb, network, first, n) {
			return first
		}
	}
	tb.Fatalf("world: no %d free consecutive %s ports in 100 tries", n, network)
	return 0
}

// claimRun claims the ports first..first+n-1 for network, or none of them.
// The lock files and this process's reservations are shared by tcp and
// udp: a port number is handed out once, whichever the protocol.
func claimRun(tb testing.TB, network string, first, n int) bool {
	var locks []*os.File
	giveBack := func(upTo int) {
		for p := first; p < upTo; p++ {
			reserved.Delete(p)
		}
		for _, f := range locks {
			f.Close()
		}
	}
	for p := first; p < first+n; p++ {
		if _, taken := reserved.LoadOrStore(p, true); taken {
			giveBack(p)
			return false
		}
		f, ok := claimPort(p)
		if f != nil {
			locks = append(locks, f)
		}
		if !ok || !bindable(network, p) {
			giveBack(p + 1)
			return false
		}
	}
	// The ports stay in reserved for the process's life (no test of this
	// binary gets them again); other binaries may have them after this
	// test.
	tb.Cleanup(func() {
		for _, f := range locks {
			f.Close()
		}
	})
	return true
}

// claimPort takes an exclusive lock on a file named for port, shared by
// every test binary of this module: go test runs packages in parallel, and
// two binaries picking the same port between their checks and the relay's
// bind was the one race the in-process map could not see. ok is false
// when another binary holds the port; a lock that cannot be had at all (no
// writable temporary directory) leaves the bind check alone to decide.
func claimPort(port int) (f *os.File, ok bool) {
	dir := filepath.Join(os.TempDir(), "relay-test-ports")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, true
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, true
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, !errors.Is(err, unix.EWOULDBLOCK)
	}
	return f, true
}

// bindable reports whether a socket of network ("tcp" or "udp") can be
// bound to port on 127.0.0.1 now.
func bindable(network string, port int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var c io.Closer
	var err error
	if network == "udp" {
		c, err = net.ListenPacket("udp", addr)
	} else {
		c, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return false // someone else's
	}
	c.Close()
	return true
}

// reservedPorts is the range ReserveTCPPort picks from, and reserved the
// ports it returned (process-wide: test binaries run tests in parallel).
var (
	reservedPorts = [2]int{10240, 20000}
	reserved      sync.Map
)

// Silent is a loopback listen socket that answers no connection: its accept
// queue is full and nobody accepts, so the kernel drops further SYNs and a
// connect waits as it would for a black-holed host. Serve brings it to life.
type Silent struct {
	fd     int
	addr   string
	filler []net.Conn // the connections that fill the queue
}

// NewSilent makes a Silent socket; tb.Cleanup closes it.
func NewSilent(tb testing.TB) *Silent {
	tb.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	s := &Silent{fd: fd}
	tb.Cleanup(s.close)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		tb.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		tb.Fatal(err)
	}
	s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*unix.SockaddrInet4).Port))
	for range 8 {
		c, err := net.DialTimeout("tcp", s.addr, 200*time.Millisecond)
		if err != nil {
			return s // the queue is full
		}
		s.filler = append(s.filler, c)
	}
	tb.Fatalf("world: the accept queue of %s never filled", s.addr)
	return nil
}

// Addr is the socket's "127.0.0.1:port".
func (s *Silent) Addr() string { return s.addr }

// Serve makes the socket a Backend running handle: the host is back. The
// connections that filled the queue are closed first.
func (s *Silent) Serve(tb testing.TB, handle func(net.Conn)) *Backend {
	tb.Helper()
	for _, c := range s.filler {
		c.Close()
	}
	s.filler = nil
	f := os.NewFile(uintptr(s.fd), "silent")
	ln, err := net.FileListener(f) // dups the socket
	f.Close()
	s.fd = -1
	if err != nil {
		tb.Fatalf("world: serve %s: %v", s.addr, err)
	}
	return serveBackend(tb, ln, handle)
}

func (s *Silent) close() {
	for _, c := range s.filler {
		c.Close()
	}
	if s.fd >= 0 {
		unix.Close(s.fd)
	}
}
