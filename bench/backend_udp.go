package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"
)

// Datagram layout sent by the bench: run id (8 bytes), sequence number (8
// bytes), then a fixed random payload. The run id tells a late datagram of
// an earlier measurement from one of the current measurement.
const (
	dgramSize   = 1200
	dgramHeader = 16
	// maxDatagrams bounds one measurement's sender, and sizes the sink's
	// duplicate bitmap.
	maxDatagrams = 1 << 25
	sinkBuffer   = 4 << 20 // SO_RCVBUF of the sink; the kernel caps it at rmem_max
)

// udpSink counts and checks the datagrams of the current run.
type udpSink struct {
	conn    *net.UDPConn
	payload []byte // what follows the header in every datagram
	wg      sync.WaitGroup

	run      atomic.Uint64 // id of the current measurement
	received atomic.Int64  // intact datagrams of the current run
	corrupt  atomic.Int64  // wrong length or payload
	empty    atomic.Int64  // zero-length datagrams: never sent, rinetd makes them
	dups     atomic.Int64  // a sequence number seen twice
	stale    atomic.Int64  // datagrams of an earlier run

	// Owned by readLoop alone.
	seen    []uint64 // bitmap of sequence numbers of seenRun
	seenRun uint64
	seenMax uint64 // highest sequence number set in seen
}

func listenUDPSink(payload []byte) (*udpSink, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	_ = c.SetReadBuffer(sinkBuffer)
	s := &udpSink{conn: c, payload: payload, seen: make([]uint64, maxDatagrams/64)}
	s.wg.Add(1)
	go s.readLoop()
	return s, nil
}

func (s *udpSink) addr() string { return s.conn.LocalAddr().String() }

// begin starts counting a new run.
func (s *udpSink) begin(run uint64) {
	s.run.Store(run)
	s.received.Store(0)
	s.corrupt.Store(0)
	s.empty.Store(0)
	s.dups.Store(0)
}

// readLoop reads in batches (recvmmsg) so that the sink is not what limits
// the direct path.
func (s *udpSink) readLoop() {
	defer s.wg.Done()
	pc := ipv4.NewPacketConn(s.conn)
	msgs := make([]ipv4.Message, 64)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	for {
		n, err := pc.ReadBatch(msgs, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		for _, m := range msgs[:n] {
			s.count(m.Buffers[0][:m.N])
		}
	}
}

// count checks one datagram.
func (s *udpSink) count(d []byte) {
	if len(d) == 0 {
		s.empty.Add(1)
		return
	}
	if len(d) != dgramSize || !bytes.Equal(d[dgramHeader:], s.payload) {
		s.corrupt.Add(1)
		return
	}
	run := binary.BigEndian.Uint64(d)
	seq := binary.BigEndian.Uint64(d[8:])
	if run != s.run.Load() {
		s.stale.Add(1)
		return
	}
	if run != s.seenRun {
		clear(s.seen[:s.seenMax/64+1])
		s.seenRun, s.seenMax = run, 0
	}
	if seq >= maxDatagrams {
		s.corrupt.Add(1)
		return
	}
	word, bit := seq/64, uint64(1)<<(seq%64)
	if s.seen[word]&bit != 0 {
		s.dups.Add(1)
		return
	}
	s.seen[word] |= bit
	s.seenMax = max(s.seenMax, seq)
	s.received.Add(1)
}

func (s *udpSink) close() {
	s.conn.Close()
	s.wg.Wait()
}

// udpEcho sends every datagram back to where it came from.
type udpEcho struct {
	conn *net.UDPConn
	wg   sync.WaitGroup
}

func listenUDPEcho() (*udpEcho, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	s := &udpEcho{conn: c}
	s.wg.Add(1)
	go s.echoLoop()
	return s, nil
}

func (s *udpEcho) addr() string { return s.conn.LocalAddr().String() }

func (s *udpEcho) echoLoop() {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		_, _ = s.conn.WriteToUDPAddrPort(buf[:n], from)
	}
}

func (s *udpEcho) close() {
	s.conn.Close()
	s.wg.Wait()
}
