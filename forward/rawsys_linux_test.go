package forward

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestRawTCPActsAsTCPConn: a rawTCP's read and write answer as the
// net.TCPConn under it would (the pipe's copy path reads and writes the
// plain side of a TLS pair through one): bytes, a deadline as a timeout
// the pipe recognises, the peer's close as io.EOF, a closed conn as
// net.ErrClosed, and the same words in the error ("read tcp A->B: ...").
func TestRawTCPActsAsTCPConn(t *testing.T) {
	c, peer := tcpPair(t)
	var s rawTCP
	s.init(c)
	if s.raw == nil {
		t.Fatal("rawTCP not in use on a *net.TCPConn")
	}

	// A write larger than the socket buffers goes out whole.
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(big))))
		got <- b
	}()
	if n, err := s.write(big); n != len(big) || err != nil {
		t.Fatalf("write: %d, %v; want %d, nil", n, err, len(big))
	}
	if b := <-got; string(b) != string(big) {
		t.Fatalf("peer got %d bytes, not the %d written", len(b), len(big))
	}

	// Reads: bytes, then a deadline, then the peer's close.
	if _, err := peer.Write([]byte("status")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := s.read(buf); err != nil || string(buf[:n]) != "status" {
		t.Fatalf("read: %q, %v", buf[:n], err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := s.read(buf)
	if !isTimeout(err) {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	want := "read tcp " + c.LocalAddr().String() + "->" + c.RemoteAddr().String() + ": i/o timeout"
	if err.Error() != want {
		t.Fatalf("error %q, want %q (as net.TCPConn words it)", err, want)
	}
	c.SetReadDeadline(time.Time{})
	peer.Close()
	if n, err := s.read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer's close: %d, %v; want 0, EOF", n, err)
	}

	// A closed conn.
	c.Close()
	if _, err := s.write([]byte("x")); !errors.Is(err, net.ErrClosed) || !strings.HasPrefix(err.Error(), "write tcp ") {
		t.Fatalf("write on a closed conn: %v, want net.ErrClosed worded as a write", err)
	}
	if _, err := s.read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a closed conn: %v, want net.ErrClosed", err)
	}
}
