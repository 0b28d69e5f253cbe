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
	"io"
	"math/rand/v2"
	"net"
	"os"
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

// DeadAddr returns a loopback address where nothing listens: it binds a
// port and closes it, so connecting is refused at once.
func DeadAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("world: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// ReserveTCPPort returns a loopback TCP port that was free a moment ago and
// that no other call in this test binary returns, for relays that must bind
// by number (a config rendered twice for a reload). The relay binds without
// SO_REUSEPORT, so the port cannot be held for it; instead it is picked at
// random from reservedPorts, below the kernel's ephemeral range (32768 and
// up by default), where neither bind(port 0) nor outgoing connections take
// ports. Two test binaries picking the same port at the same moment is the
// remaining risk, about one in ten thousand.
func ReserveTCPPort(tb testing.TB) int {
	tb.Helper()
	for range 100 {
		port := reservedPorts[0] + rand.IntN(reservedPorts[1]-reservedPorts[0])
		if _, taken := reserved.LoadOrStore(port, true); taken {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // someone else's
		}
		ln.Close()
		return port
	}
	tb.Fatal("world: no free TCP port in 100 tries")
	return 0
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
