package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"time"
)

// The scenarios run one after another, so an upgrade may fall between a
// UDP blast (whose loss is a figure, not a failure: loopback drops under
// an unpaced load) and the short connections of tcp-connrate. A witness
// is traffic kept going across every upgrade, from just before the signal
// to just after the new process serves, where any loss is the upgrade's:
// short connections (connect, one byte echoed, close) through the box
// office's tcp listener and through the tunnel (box office, then venue),
// one at a time; on each of the two, a connection opened before the
// signal that echoes a byte every few milliseconds until the end, the old
// process's to carry while it drains; and a request/reply UDP stream, one
// datagram a millisecond, of which every one must be answered (README: a
// request/reply stream loses nothing).

// witnessAround is how long the witness runs before the upgrade starts
// and after it has ended.
const witnessAround = 300 * time.Millisecond

// witnessReplies bounds the wait for the UDP stream's last replies.
const witnessReplies = 2 * time.Second

// witnessGap is the UDP stream's pace: slow enough that loopback never
// drops it, fast enough that the handover falls between datagrams of it.
const witnessGap = time.Millisecond

// witnessed is what witnesses carried.
type witnessed struct {
	conns     int // short connections
	echoes    int // bytes echoed on the held connections
	datagrams int // of the UDP stream
}

func (a *witnessed) add(b witnessed) {
	a.conns += b.conns
	a.echoes += b.echoes
	a.datagrams += b.datagrams
}

// witness is the traffic across one upgrade.
type witness struct {
	stop    chan struct{}
	senders sync.WaitGroup
	reader  sync.WaitGroup
	uc      *net.UDPConn // nil without a stream-echo route

	mu       sync.Mutex // guards the following
	conns    int        // short connections that completed
	echoes   int        // bytes echoed on the held connections
	failures []string
	sent     int
	answered map[uint64]bool
	wrong    int // replies that are no datagram sent
}

// startWitness starts the witness traffic on those of the instance's
// routes that the scenarios picked.
func startWitness(in *instance) (*witness, error) {
	w := &witness{stop: make(chan struct{}), answered: map[uint64]bool{}}
	if addr := in.addr("stream-echo"); addr != "" {
		raddr, err := net.ResolveUDPAddr("udp4", addr) // an IP literal: no resolver
		if err != nil {
			return nil, err
		}
		if w.uc, err = net.DialUDP("udp4", nil, raddr); err != nil {
			return nil, fmt.Errorf("witness: %w", err)
		}
		w.senders.Add(1)
		w.reader.Add(1)
		go w.sendStream()
		go w.readReplies()
	}
	for _, route := range []string{"short", "tls-echo"} {
		if addr := in.addr(route); addr != "" {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				close(w.stop)
				w.senders.Wait()
				if w.uc != nil {
					w.uc.Close()
					w.reader.Wait()
				}
				return nil, fmt.Errorf("witness: the connection held across the upgrade, to %s (%s): %w", route, addr, err)
			}
			w.senders.Add(2)
			go w.shortConns(route, addr)
			go w.held(route, c)
		}
	}
	return w, nil
}

// shortConns opens one connection after another until stop.
func (w *witness) shortConns(route, addr string) {
	defer w.senders.Done()
	start := time.Now()
	failed := 0
	for i := 0; i < 100_000 && failed < 3; i++ { // three failures say enough; a refused dial would spin
		select {
		case <-w.stop:
			return
		default:
		}
		err := shortConn(addr, byte(i))
		w.mu.Lock()
		if err == nil {
			w.conns++
		} else {
			failed++
			w.failures = append(w.failures, fmt.Sprintf("connection %d to %s (%s), %s into the upgrade: %v",
				i+1, route, addr, (time.Since(start)-witnessAround).Round(time.Millisecond), err))
		}
		w.mu.Unlock()
	}
}

// witnessHeldGap is how often the held connection echoes a byte.
const witnessHeldGap = 5 * time.Millisecond

// held echoes a byte every witnessHeldGap on c, a connection opened before
// the upgrade, until stop, then closes it.
func (w *witness) held(route string, c net.Conn) {
	defer w.senders.Done()
	defer c.Close()
	start := time.Now()
	t := time.NewTicker(witnessHeldGap)
	defer t.Stop()
	for i := 0; i < 1_000_000; i++ {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		if err := echoOne(c, byte(i)); err != nil {
			w.mu.Lock()
			w.failures = append(w.failures, fmt.Sprintf("the connection to %s held across the upgrade, echo %d, %s into the upgrade: %v",
				route, i+1, (time.Since(start)-witnessAround).Round(time.Millisecond), err))
			w.mu.Unlock()
			return
		}
		w.mu.Lock()
		w.echoes++
		w.mu.Unlock()
	}
}

// witnessDatagram is the UDP stream's datagram: a sequence number and
// padding that the reply must return unchanged.
const witnessDatagram = 64

func witnessPayload(seq uint64) []byte {
	b := make([]byte, witnessDatagram)
	binary.BigEndian.PutUint64(b, seq)
	for i := 8; i < len(b); i++ {
		b[i] = byte(seq) + byte(i)
	}
	return b
}

// sendStream sends one datagram every witnessGap until stop.
func (w *witness) sendStream() {
	defer w.senders.Done()
	t := time.NewTicker(witnessGap)
	defer t.Stop()
	for seq := uint64(0); seq < 1_000_000; seq++ {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		if _, err := w.uc.Write(witnessPayload(seq)); err != nil {
			w.mu.Lock()
			w.failures = append(w.failures, fmt.Sprintf("UDP stream, datagram %d: %v", seq, err))
			w.mu.Unlock()
			return
		}
		w.mu.Lock()
		w.sent++
		w.mu.Unlock()
	}
}

// readReplies records the stream's replies until the socket is closed.
func (w *witness) readReplies() {
	defer w.reader.Done()
	buf := make([]byte, 2048)
	for {
		n, err := w.uc.Read(buf)
		if err != nil {
			return // closed by finish
		}
		w.mu.Lock()
		if n == witnessDatagram && bytes.Equal(buf[:n], witnessPayload(binary.BigEndian.Uint64(buf))) {
			w.answered[binary.BigEndian.Uint64(buf)] = true
		} else {
			w.wrong++
		}
		w.mu.Unlock()
	}
}

// finish stops the traffic, waits for the stream's last replies, and
// says what went wrong (nothing: none) and how much it carried.
func (w *witness) finish() (failures []string, carried witnessed) {
	close(w.stop)
	w.senders.Wait()
	if w.uc != nil {
		for deadline := time.Now().Add(witnessReplies); time.Now().Before(deadline); {
			w.mu.Lock()
			done := len(w.answered) >= w.sent
			w.mu.Unlock()
			if done {
				break
			}
			time.Sleep(10 * time.Millisecond) // the replies have no other signal
		}
		w.uc.Close()
		w.reader.Wait()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	failures = w.failures
	if lost := w.sent - len(w.answered); lost > 0 || w.wrong > 0 {
		var first []uint64
		for seq := uint64(0); seq < uint64(w.sent) && len(first) < 5; seq++ {
			if !w.answered[seq] {
				first = append(first, seq)
			}
		}
		failures = append(failures, fmt.Sprintf("UDP request/reply stream: %d of %d datagrams unanswered (first: %v, %s apart), %d wrong replies",
			lost, w.sent, first, witnessGap, w.wrong))
	}
	return failures, witnessed{conns: w.conns, echoes: w.echoes, datagrams: w.sent}
}
