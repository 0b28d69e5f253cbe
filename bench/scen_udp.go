package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/net/ipv4"
)

// udpScenario sends 1200-byte datagrams (an RTB live stream's size) from
// one client: as fast as the sender can (what gets through, and the loss)
// and paced at a fixed offered rate (the loss).
type udpScenario struct {
	sink    *udpSink
	echo    *udpEcho
	payload []byte
	runs    uint64 // run ids handed out
}

func (*udpScenario) name() string { return "udp" }

func (*udpScenario) metrics() []metric {
	return []metric{
		{key: "kpps", label: "1200 B unpaced, received", unit: "k datagrams/s", higher: true, digits: 0},
		{key: "loss-unpaced", label: "1200 B unpaced, loss", unit: "%", digits: 1, noRatio: true},
		{key: "loss-paced", label: "1200 B paced at 500 Mbit/s, loss", unit: "%", digits: 2, noRatio: true},
	}
}

func (u *udpScenario) setup(*env) ([]route, error) {
	u.payload = randomBytes(dgramSize-dgramHeader, 3)
	var err error
	if u.sink, err = listenUDPSink(u.payload); err != nil {
		return nil, err
	}
	if u.echo, err = listenUDPEcho(); err != nil {
		u.sink.close()
		return nil, err
	}
	return []route{
		{name: "stream", mode: "udp", upstream: u.sink.addr()},
		{name: "stream-echo", mode: "udp", upstream: u.echo.addr()},
	}, nil
}

func (u *udpScenario) teardown() {
	u.sink.close()
	u.echo.close()
}

func (*udpScenario) skip(string) string { return "" }
func (*udpScenario) fresh() bool        { return false }

func (u *udpScenario) measure(e *env, in *instance) (map[string]float64, error) {
	unpaced, uerr := u.blast(in.addr("stream"), e.scale.window, 0)
	if uerr != nil && unpaced.sent == 0 {
		return nil, fmt.Errorf("unpaced: %w", uerr)
	}
	rate := e.scale.udpRate / (dgramSize * 8)
	paced, perr := u.blast(in.addr("stream"), e.scale.window, rate)
	if perr != nil && paced.sent == 0 {
		return nil, fmt.Errorf("paced: %w", perr)
	}
	figures := map[string]float64{
		"kpps":         float64(unpaced.received) / e.scale.window.Seconds() / 1000,
		"loss-unpaced": unpaced.loss(),
		"loss-paced":   paced.loss(),
	}
	// The figures stand even when a check failed; the check still fails
	// the run.
	var errs []error
	if uerr != nil {
		errs = append(errs, fmt.Errorf("unpaced: %w", uerr))
	}
	if perr != nil {
		errs = append(errs, fmt.Errorf("paced: %w", perr))
	}
	if err := echoDatagrams(in.addr("stream-echo"), u.payload, 100); err != nil {
		errs = append(errs, fmt.Errorf("echo: %w", err))
	}
	err := errors.Join(errs...)
	return figures, err
}

// blastResult is what one sending run delivered.
type blastResult struct {
	sent, received int64
}

func (b blastResult) loss() float64 {
	if b.sent == 0 {
		return 0
	}
	return 100 * float64(b.sent-b.received) / float64(b.sent)
}

// blast sends for window at rate datagrams per second (0: as fast as it
// can), waits for the stragglers, and checks what the sink got.
func (u *udpScenario) blast(addr string, window time.Duration, rate float64) (blastResult, error) {
	u.runs++
	run := uint64(time.Now().UnixNano()) ^ u.runs
	u.sink.begin(run)
	sent, err := sendDatagrams(addr, run, u.payload, window, rate)
	if err != nil {
		return blastResult{}, err
	}
	// Wait until nothing more arrives for 200 ms, at most 3 s.
	last, quiet := u.sink.received.Load(), time.Now()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		time.Sleep(25 * time.Millisecond)
		if n := u.sink.received.Load(); n != last {
			last, quiet = n, time.Now()
		} else if time.Since(quiet) > 200*time.Millisecond {
			break
		}
	}
	got := u.sink.received.Load()
	res := blastResult{sent: sent, received: got}
	if z := u.sink.empty.Load(); z > 0 {
		return res, integrityf("%d zero-length datagrams arrived; none were sent", z)
	}
	if c, d := u.sink.corrupt.Load(), u.sink.dups.Load(); c > 0 || d > 0 {
		return res, integrityf("%d corrupt and %d duplicated datagrams of %d sent", c, d, sent)
	}
	if got > sent {
		return res, integrityf("sink counted %d datagrams, %d were sent", got, sent)
	}
	return res, nil
}

// sendDatagrams sends numbered datagrams in batches (sendmmsg), at rate per
// second or unpaced when rate is 0, until window has passed.
func sendDatagrams(addr string, run uint64, payload []byte, window time.Duration, rate float64) (int64, error) {
	c, err := net.Dial("udp4", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.(*net.UDPConn).SetWriteBuffer(sinkBuffer)
	pc := ipv4.NewPacketConn(c.(*net.UDPConn))
	msgs := make([]ipv4.Message, 64)
	for i := range msgs {
		b := make([]byte, dgramSize)
		binary.BigEndian.PutUint64(b, run)
		copy(b[dgramHeader:], payload)
		msgs[i].Buffers = [][]byte{b}
	}
	start := time.Now()
	var seq int64
	for seq < maxDatagrams {
		elapsed := time.Since(start)
		if elapsed >= window {
			break
		}
		batch := len(msgs)
		if rate > 0 {
			due := int64(elapsed.Seconds()*rate) + 1
			if due <= seq {
				time.Sleep(100 * time.Microsecond)
				continue
			}
			batch = int(min(due-seq, int64(len(msgs))))
		}
		batch = int(min(int64(batch), maxDatagrams-seq))
		for i := range batch {
			binary.BigEndian.PutUint64(msgs[i].Buffers[0][8:], uint64(seq)+uint64(i))
		}
		n, err := pc.WriteBatch(msgs[:batch], 0)
		seq += int64(n)
		if err != nil {
			return seq, fmt.Errorf("send: %w", err)
		}
	}
	return seq, nil
}

// echoDatagrams checks the reply path: n datagrams, one at a time, each
// must come back byte for byte.
func echoDatagrams(addr string, payload []byte, n int) error {
	c, err := net.Dial("udp4", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	out := make([]byte, dgramSize)
	copy(out[dgramHeader:], payload)
	in := make([]byte, 2048)
	for i := range n {
		binary.BigEndian.PutUint64(out[8:], uint64(i))
		if err := echoDatagram(c, out, in); err != nil {
			return fmt.Errorf("datagram %d: %w", i, err)
		}
	}
	return nil
}

// echoDatagram sends d and waits for it to come back, sending again up to
// three times: loopback may still drop under load.
func echoDatagram(c net.Conn, d, buf []byte) error {
	for try := 0; try < 3; try++ {
		if _, err := c.Write(d); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break // timeout: send again
			}
			if bytes.Equal(buf[:n], d) {
				return nil
			}
			if n == 0 {
				return integrityf("a zero-length datagram came back; none was sent")
			}
			if n != len(d) || !bytes.Equal(buf[dgramHeader:n], d[dgramHeader:]) {
				return integrityf("reply of %d bytes differs from the %d sent", n, len(d))
			}
			// An earlier datagram's late echo: keep reading.
		}
	}
	return integrityf("no echo after three sends")
}
