package forward

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// tcpPair returns both ends of one loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// hidden wraps a TCPConn so that Pipe cannot see the type (as with a
// connection wrapper), but keeps CloseWrite.
type hidden struct{ *net.TCPConn }

// TestPipeNetPipe runs Pipe over net.Pipe, which has no fd: the fallback
// copy moves the bytes, and EOF ends the pair because net.Pipe cannot
// half-close.
func TestPipeNetPipe(t *testing.T) {
	checkLeaks(t)
	client, a := net.Pipe()
	b, backend := net.Pipe()
	if canSplice(a, b) {
		t.Fatal("canSplice(net.Pipe) = true")
	}
	var progress atomic.Int64
	var ab, ba atomic.Uint64
	res := make(chan Result, 1)
	go func() {
		res <- Pipe(context.Background(), a, b, PipeOptions{
			Progress: func(n int) { progress.Add(int64(n)) }, AtoB: &ab, BtoA: &ba})
	}()
	client.SetDeadline(time.Now().Add(5 * time.Second))
	backend.SetDeadline(time.Now().Add(5 * time.Second))
	go io.WriteString(client, "hello")
	buf := make([]byte, 5)
	if _, err := io.ReadFull(backend, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("backend read %q, %v", buf, err)
	}
	go io.WriteString(backend, "world!")
	buf = make([]byte, 6)
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "world!" {
		t.Fatalf("client read %q, %v", buf, err)
	}
	client.Close()
	r := <-res
	if r.AtoB != 5 || r.BtoA != 6 || r.End != EndEOF || r.Err != nil {
		t.Errorf("Result %+v", r)
	}
	if progress.Load() != 11 || ab.Load() != 5 || ba.Load() != 6 {
		t.Errorf("progress %d, counters %d %d", progress.Load(), ab.Load(), ba.Load())
	}
	if _, err := backend.Read(buf); err != io.EOF {
		t.Errorf("backend end not closed: %v", err)
	}
}

// TestPipeFallbackHalfClose moves 4 MiB each way through the copy fallback
// (wrapped TCP conns) and keeps half-close working.
func TestPipeFallbackHalfClose(t *testing.T) {
	checkLeaks(t)
	client, a := tcpPair(t)
	b, backend := tcpPair(t)
	if canSplice(hidden{a}, hidden{b}) {
		t.Fatal("canSplice(wrapped) = true")
	}
	res := make(chan Result, 1)
	go func() { res <- Pipe(context.Background(), hidden{a}, hidden{b}, PipeOptions{Pool: NewPool(0)}) }()
	const size = 4 << 20
	client.SetDeadline(time.Now().Add(10 * time.Second))
	backend.SetDeadline(time.Now().Add(10 * time.Second))
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		io.Copy(client, world.Stream(3, size))
		client.CloseWrite()
	}()
	got, err := world.Hash(backend)
	if err != nil || got != world.StreamSum(3, size) {
		t.Fatalf("backend got %d bytes, %v", got.N, err)
	}
	io.Copy(backend, world.Stream(4, size))
	backend.CloseWrite()
	back, err := world.Hash(client)
	<-sent
	if err != nil || back != world.StreamSum(4, size) {
		t.Fatalf("client got %d bytes, %v", back.N, err)
	}
	if r := <-res; r.AtoB != size || r.BtoA != size || r.End != EndEOF {
		t.Errorf("Result %+v", r)
	}
}

// TestPipeCancel: cancelling the context ends a pipe that is waiting.
func TestPipeCancel(t *testing.T) {
	checkLeaks(t)
	client, a := tcpPair(t)
	b, _ := tcpPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan Result, 1)
	go func() { res <- Pipe(ctx, a, b, PipeOptions{}) }()
	cancel()
	select {
	case r := <-res:
		if r.End != EndShutdown {
			t.Errorf("End = %q, want shutdown", r.End)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Pipe did not end on cancel")
	}
	expectClosed(t, client, time.Second)
}

// TestPipeReset: a peer that resets ends the pair with End "reset".
func TestPipeReset(t *testing.T) {
	checkLeaks(t)
	client, a := tcpPair(t)
	b, _ := tcpPair(t)
	res := make(chan Result, 1)
	go func() { res <- Pipe(context.Background(), a, b, PipeOptions{}) }()
	client.SetLinger(0)
	client.Close() // RST
	select {
	case r := <-res:
		if r.End != EndReset {
			t.Errorf("Result %+v, want reset", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Pipe did not end on reset")
	}
}

// TestIdleConnHoldsNoPipe: short exchanges move with read/write and take
// no pipe; a bulk exchange takes pipes and gives them back, so three idle
// connections hold none.
func TestIdleConnHoldsNoPipe(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}})
	conns := make([]*net.TCPConn, 3)
	for i := range conns {
		conns[i] = r.dial(t, 0)
		roundTrip(t, conns[i], "hello")
	}
	if idle, inUse := r.pool.Idle(), r.pool.InUse(); idle+inUse != 0 {
		t.Errorf("short exchanges took pipes: %d idle, %d in use", idle, inUse)
	}
	for i, c := range conns {
		echoBulk(t, c, uint64(i), 4<<20)
	}
	world.Eventually(t, "pipes back in the pool", func() bool { return r.pool.InUse() == 0 })
	if idle := r.pool.Idle(); idle < 1 || idle > 6 {
		t.Errorf("pool holds %d idle pipes", idle)
	}
	if n := r.Stats().Active.Load(); n != 3 {
		t.Errorf("Active = %d, want 3", n)
	}
}

// echoBulk sends n bytes through an echo path while reading them back,
// and checks the SHA-256 of what came back.
func echoBulk(t *testing.T, c net.Conn, seed uint64, n int64) {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	defer c.SetDeadline(time.Time{})
	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, world.Stream(seed, n))
		werr <- err
	}()
	got, err := world.Hash(io.LimitReader(c, n))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if want := world.StreamSum(seed, n); got != want {
		t.Errorf("echo: %d bytes %x, want %d bytes %x", got.N, got.SHA, want.N, want.SHA)
	}
}

func TestPoolBound(t *testing.T) {
	p := NewPool(2)
	var got []*spliceBuf
	for range 4 {
		sb, err := p.getPipe()
		if err != nil {
			t.Skipf("no pipes: %v", err)
		}
		got = append(got, sb)
	}
	for _, sb := range got {
		p.putPipe(sb)
	}
	if p.Idle() != 2 || p.InUse() != 0 {
		t.Errorf("idle %d in use %d, want 2 and 0", p.Idle(), p.InUse())
	}
	p.Close()
	p.Close()
	if p.Idle() != 0 {
		t.Errorf("idle %d after Close", p.Idle())
	}
}

// TestPipeResetAfterHalfClose: one direction ends with EOF, then the other
// peer resets: the pipe ends "reset", not "eof".
func TestPipeResetAfterHalfClose(t *testing.T) {
	checkLeaks(t)
	client, a := tcpPair(t)
	b, backend := tcpPair(t)
	res := make(chan Result, 1)
	go func() { res <- Pipe(context.Background(), a, b, PipeOptions{}) }()
	client.CloseWrite()
	backend.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := backend.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("backend read %d, %v; want EOF", n, err)
	}
	backend.SetLinger(0)
	backend.Close()
	select {
	case r := <-res:
		if r.End != EndReset || r.Err == nil {
			t.Errorf("Result %+v, want reset with its error", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Pipe did not end")
	}
}

// TestNoPipeFallsBackToCopy: when no pipe can be had (a process at its fd
// limit), a bulk flow still arrives whole, copied through the buffer, and
// the connection does not fail.
func TestNoPipeFallsBackToCopy(t *testing.T) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	pool := NewPool(0)
	pool.openPipe = func(int) (*spliceBuf, error) { return nil, syscall.EMFILE }
	t.Cleanup(func() { pool.Close() })
	r := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}, Pool: pool})
	c := r.dial(t, 0)
	echoBulk(t, c, 7, 8<<20)
	roundTrip(t, c, "still here")
	if n := pool.InUse(); n != 0 {
		t.Errorf("pool counts %d pipes in use after failed opens", n)
	}
}
