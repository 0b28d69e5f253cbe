//go:build linux

package forward

// The front's less common paths: a connection it keeps past parkAfter
// (half-closed, so the engine's bare pair cannot take it) and a client
// too slow to take what the upstream sends (writes wait for room).

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
	"golang.org/x/sys/unix"
)

// TestFrontKeptHalfClosedIdle: the upstream answers and half-closes, the
// client goes quiet without closing. The front keeps the half-closed
// connection past parkAfter and ends it at the idle timeout, with one
// access line and the upstream's socket closed.
func TestFrontKeptHalfClosedIdle(t *testing.T) {
	checkFrontLeaks(t)
	const idle = 400 * time.Millisecond
	upEOF := make(chan error, 1)
	backend := world.NewBackend(t, func(c net.Conn) {
		c.Write([]byte("hello"))
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(world.WaitLimit))
		_, err := io.Copy(io.Discard, c) // nil once the relay closes its side
		upEOF <- err
	})
	r := listenRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}, IdleTimeout: idle})
	r.parkAfter = 100 * time.Millisecond
	r.serve(t)
	start := time.Now()
	c := r.dial(t, 0)
	c.SetReadDeadline(time.Now().Add(world.WaitLimit))
	got, err := io.ReadAll(c) // the greeting, then the upstream's end
	if err != nil || string(got) != "hello" {
		t.Fatalf("client read %q, %v; want the greeting and EOF", got, err)
	}
	if err := await(t, upEOF, "the relay closing the upstream"); err != nil {
		t.Fatalf("upstream read: %v", err)
	}
	if took := time.Since(start); took < idle-idle/8 {
		t.Errorf("closed after %v, idle timeout is %v", took, idle)
	}
	line := closedLines(t, r, 1, EndIdle)[0]
	if line["bytes_in"] != 0.0 || line["bytes_out"] != 5.0 {
		t.Errorf("access line counts %v in, %v out; want 0 and 5", line["bytes_in"], line["bytes_out"])
	}
	// The line is written just before the slot is given back.
	world.Eventually(t, "Active back to 0", func() bool { return r.Stats().Active.Load() == 0 })
	if n := r.pool.Parked(); n != 0 {
		t.Errorf("%d directions parked: a half-closed connection stays in the front", n)
	}
}

// TestFrontSlowReader: a client with a small receive buffer that starts
// reading late gets every byte the upstream sent right after connecting;
// the front's writes wait for room (EAGAIN, then EPOLLOUT) before the
// bulk connection moves to the engine.
func TestFrontSlowReader(t *testing.T) {
	checkFrontLeaks(t)
	const size = 4 << 20
	backend := world.NewBackend(t, func(c net.Conn) {
		io.Copy(c, world.Stream(7, size))
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(world.WaitLimit))
		io.Copy(io.Discard, c)
	})
	r := listenRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}, IdleTimeout: time.Minute})
	// Accepted sockets inherit the listen socket's send buffer: a small
	// one makes the relay's writes to the client run out of room at once.
	rc, err := r.lns[0].SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := setSockBuffer(rc, unix.SO_SNDBUF, 4096); err != nil {
		t.Fatal(err)
	}
	r.serve(t)
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return setSockBuffer(rc, unix.SO_RCVBUF, 4096) // the kernel's minimum, about 4 KiB usable
	}}
	conn, err := d.Dial("tcp", r.addr(0))
	if err != nil {
		t.Fatal(err)
	}
	c := conn.(*net.TCPConn)
	defer c.Close()
	// Wait until the relay has had to hold bytes back: its write to the
	// client found no room (the upstream has sent far more than fits).
	world.Eventually(t, "relay holding bytes for the client", func() bool {
		return r.Stats().BytesOut.Load() > 0 && r.Stats().BytesOut.Load() < size
	})
	c.SetReadDeadline(time.Now().Add(world.WaitLimit))
	got, err := world.Hash(c)
	if want := world.StreamSum(7, size); err != nil || got != want {
		t.Fatalf("client got %d bytes, %v (or hash differs); want %d", got.N, err, size)
	}
	c.Close()
	line := closedLines(t, r, 1, EndEOF)[0]
	if line["bytes_out"] != float64(size) || line["bytes_in"] != 0.0 {
		t.Errorf("access line counts %v in, %v out; want 0 and %d", line["bytes_in"], line["bytes_out"], size)
	}
}

// setSockBuffer sets SO_RCVBUF or SO_SNDBUF on a socket.
func setSockBuffer(rc syscall.RawConn, opt, n int) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, n)
	}); err != nil {
		return err
	}
	return serr
}
