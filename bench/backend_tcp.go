package main

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// tcpServer is an in-process loopback backend: it accepts connections and
// hands each to handle on a goroutine of its own.
type tcpServer struct {
	ln     net.Listener
	handle func(*net.TCPConn)
	wg     sync.WaitGroup

	accepted atomic.Int64 // connections accepted so far
	open     atomic.Int64 // connections whose handler has not returned

	mu     sync.Mutex // guards the following
	conns  map[*net.TCPConn]struct{}
	closed bool
}

// listenTCP binds a backend on an ephemeral loopback port; serve starts it.
func listenTCP(handle func(*net.TCPConn)) (*tcpServer, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &tcpServer{ln: ln, handle: handle, conns: map[*net.TCPConn]struct{}{}}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func (s *tcpServer) addr() string { return s.ln.Addr().String() }

func (s *tcpServer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // EMFILE and friends: the scenario sees the shortfall
		}
		tc := c.(*net.TCPConn)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			tc.Close()
			return
		}
		s.conns[tc] = struct{}{}
		s.mu.Unlock()
		s.accepted.Add(1)
		s.open.Add(1)
		s.wg.Add(1)
		go s.serveConn(tc)
	}
}

func (s *tcpServer) serveConn(c *net.TCPConn) {
	defer s.wg.Done()
	s.handle(c)
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.open.Add(-1)
}

// close stops accepting, closes every connection and waits for the handlers.
func (s *tcpServer) close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

// sink reads until EOF and adds what it read to *total.
func sink(total *atomic.Int64) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		buf := make([]byte, 256<<10)
		for {
			n, err := c.Read(buf)
			total.Add(int64(n))
			if err != nil {
				return
			}
		}
	}
}

// hashReply reads an 8-byte big-endian length and that many bytes, then
// answers with their SHA-256 and the length. The length prefix, rather than
// EOF, ends the data: rinetd and nginx (by default) do not pass a half-close.
func hashReply(c *net.TCPConn) {
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, io.LimitReader(c, int64(binary.BigEndian.Uint64(hdr[:]))), make([]byte, 256<<10))
	if err != nil {
		return
	}
	reply := h.Sum(nil)
	reply = binary.BigEndian.AppendUint64(reply, uint64(n))
	_, _ = c.Write(reply)
}

// echo sends back what it reads, with a small buffer: the idle scenario
// holds ten thousand of these.
func echo(c *net.TCPConn) {
	buf := make([]byte, 512)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
