package forward

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// tlsPair returns both ends of a loopback TLS connection after the
// handshake: one over a recordConn over a countingConn, as terminate and
// originate make them (the server when recordServer, else the client),
// and a plain crypto/tls peer.
func tlsPair(t *testing.T, recordServer bool) (recorded *tls.Conn, counted *countingConn, peer *tls.Conn) {
	t.Helper()
	p := newPKI(t, "records-ca")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialed, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	accepted, err := ln.Accept()
	if err != nil {
		dialed.Close()
		t.Fatal(err)
	}
	sc, cc := accepted, dialed
	if recordServer {
		counted = &countingConn{Conn: accepted}
		sc = newRecordConn(counted, nil)
	} else {
		counted = &countingConn{Conn: dialed}
		cc = newRecordConn(counted, nil)
	}
	server := tls.Server(sc, p.serverTLS(t, "").Config())
	client := tls.Client(cc, &tls.Config{RootCAs: p.clientPool(t), ServerName: "127.0.0.1"})
	t.Cleanup(func() { client.Close(); server.Close() })
	done := make(chan error, 1)
	go func() { done <- client.Handshake() }()
	if err := server.Handshake(); err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	recorded, peer = client, server
	if recordServer {
		recorded, peer = server, client
	}
	recordConnOf(recorded).shaken = true
	counted.writes.Store(0)
	return recorded, counted, peer
}

// TestTLSRecordsLeaveInOneWrite: the pipe copies 32 KiB per read into
// TLS, two full records (and, in the first 128 KiB, many small ones of
// crypto/tls's dynamic record sizing); each read's records must leave in
// one write(2), where crypto/tls alone writes every record by itself.
func TestTLSRecordsLeaveInOneWrite(t *testing.T) {
	checkLeaks(t)
	server, counted, client := tlsPair(t, true)
	plain, feed := net.Pipe() // a Read of plain returns 32 KiB of the 256 KiB write
	const n = 256 << 10
	data := bytes.Repeat([]byte("relay tunnel "), n/13+1)[:n]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	piped := make(chan Result, 1)
	go func() { piped <- Pipe(ctx, plain, server, PipeOptions{}) }()
	go func() {
		feed.Write(data)
		feed.Close() // EOF: the pipe sends close_notify
	}()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatalf("read through TLS: %v", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("got %d bytes, want %d, SHA-256 differs", len(got), n)
	}
	client.Close()
	if res := <-piped; res.AtoB != n {
		t.Fatalf("pipe moved %d bytes a->b, want %d", res.AtoB, n)
	}
	// 8 reads of 32 KiB, one write each, and the close_notify.
	if w := counted.writes.Load(); w > n/copyBufferSize+1 {
		t.Fatalf("%d writes to the socket for %d reads of the plain side; want one per read (plus close_notify)", w, n/copyBufferSize)
	}
}

// TestTLSGatherNeverWaits: after a Read, the pipe reads on from TLS only
// what needs no wait, and a gather that found nothing leaves the conn
// usable (crypto/tls keeps a temporary read error for the next Read
// instead of failing for good).
func TestTLSGatherNeverWaits(t *testing.T) {
	checkLeaks(t)
	src, _, peer := tlsPair(t, false)
	d := &direction{src: src}
	buf := make([]byte, 1024)
	src.SetReadDeadline(time.Now().Add(5 * time.Second)) // a gather that waited would fail with a timeout

	// One record: the gather after it must return at once, with nothing.
	if _, err := peer.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	n, err := src.Read(buf)
	if err != nil || string(buf[:n]) != "first" {
		t.Fatalf("read %q, %v; want first", buf[:n], err)
	}
	start := time.Now()
	if n, err = d.gather(buf, n); err != nil || string(buf[:n]) != "first" {
		t.Fatalf("gather: %q, %v; want first, nil", buf[:n], err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Fatalf("gather waited %v for a record that was not sent", waited)
	}

	// Two records and close_notify, all on the socket before the read:
	// one Read and a gather take both records and the EOF.
	peer.Write([]byte("second"))
	peer.Write([]byte("third"))
	peer.Close()
	n, err = src.Read(buf)
	if err == nil {
		n, err = d.gather(buf, n)
	}
	if string(buf[:n]) != "secondthird" || !errors.Is(err, io.EOF) {
		t.Fatalf("read and gather: %q, %v; want secondthird, EOF", buf[:n], err)
	}
}

// failingConn fails every write, as a socket the peer reset does.
type failingConn struct {
	net.Conn
	writes int
}

func (c *failingConn) Write([]byte) (int, error) {
	c.writes++
	return 0, errors.New("connection reset by peer")
}

// TestRecordConnFailedFlushIsFinal: once a batch could not be written,
// the TLS stream may end inside a record, so nothing more may follow it
// (crypto/tls, which never sees the flush, would send its close_notify).
func TestRecordConnFailedFlushIsFinal(t *testing.T) {
	fc := &failingConn{}
	rc := newRecordConn(fc, nil)
	rc.shaken = true
	rc.beginBatch()
	if n, err := rc.Write([]byte("record")); n != 6 || err != nil {
		t.Fatalf("batched write: %d, %v; want 6, nil", n, err)
	}
	if fc.writes != 0 {
		t.Fatalf("%d writes reached the socket before the flush", fc.writes)
	}
	if err := rc.endBatch(); err == nil {
		t.Fatal("flush: no error from a failing socket")
	}
	if _, err := rc.Write([]byte("close_notify")); err == nil || fc.writes != 1 {
		t.Fatalf("write after a failed flush: %v, %d socket writes; want the flush's error and 1", err, fc.writes)
	}
}

// TestRecordConnRawErrors: a recordConn over a TCP socket reads and
// writes it through RawSyscall, and its results read as net.TCPConn's
// would: all bytes of a large write, a deadline as a timeout worded "read
// tcp ...", the peer's close as io.EOF.
func TestRecordConnRawErrors(t *testing.T) {
	checkLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peerc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			c = nil
		}
		peerc <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer := <-peerc
	if peer == nil {
		t.Fatal("accept failed")
	}
	defer peer.Close()
	rc := newRecordConn(c, nil)
	if rc.sock.raw == nil {
		t.Skip("no raw socket I/O on this platform")
	}
	const size = 4 << 20
	got := make(chan world.Sum, 1)
	go func() {
		peer.SetReadDeadline(time.Now().Add(world.WaitLimit))
		s, _ := world.Hash(io.LimitReader(peer, size))
		got <- s
	}()
	payload, _ := io.ReadAll(world.Stream(3, size))
	if n, err := rc.Write(payload); n != size || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, size)
	}
	if s := <-got; s != world.StreamSum(3, size) {
		t.Fatalf("peer got %d bytes (or a different hash), want %d", s.N, size)
	}
	rc.SetReadDeadline(time.Now().Add(-time.Second))
	_, err = rc.Read(make([]byte, 16))
	if msg := fmt.Sprint(err); !isTimeout(err) || !strings.HasPrefix(msg, "read tcp ") || strings.Count(msg, "tcp") != 1 {
		t.Fatalf("Read past its deadline = %v; want a timeout worded as net.TCPConn's", err)
	}
	rc.SetReadDeadline(time.Now().Add(world.WaitLimit))
	peer.Write([]byte("ab"))
	peer.Close()
	buf, err := io.ReadAll(rc)
	if string(buf) != "ab" || err != nil { // ReadAll turns io.EOF into nil
		t.Fatalf("read %q, %v; want ab then EOF", buf, err)
	}
}
