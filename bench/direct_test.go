package main

import (
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"

	"github.com/edgerelay/relay/internal/world"
)

// tinyScale keeps every scenario's direct run well under a second.
func tinyScale() scale {
	return scale{runs: 1, window: 100 * time.Millisecond, idleConns: 50,
		ftpFileSize: 1 << 20, rawSamples: 100, checkBytes: 1 << 20, udpRate: 50e6}
}

// TestScenariosDirect runs every scenario on the direct path: the load
// generators, backends and checks agree with each other.
func TestScenariosDirect(t *testing.T) {
	defer test.CheckRoutines(t)()
	e := &env{dir: t.TempDir(), ports: newPortAlloc(), scale: tinyScale(), files: 4096}
	for _, sc := range allScenarios() {
		if sc.skip("direct") != "" {
			continue
		}
		t.Run(sc.name(), func(t *testing.T) {
			routes, err := sc.setup(e)
			if err != nil {
				t.Fatal(err)
			}
			defer sc.teardown()
			in, err := direct{}.start(e, routes)
			if err != nil {
				t.Fatal(err)
			}
			vals, err := sc.measure(e, in)
			if err != nil {
				t.Fatal(err)
			}
			if jm, ok := sc.(jointMeasurer); ok {
				joint, errs := jm.measureJoint(e, []*instance{in})
				if errs[0] != nil {
					t.Fatal(errs[0])
				}
				for k, v := range joint[0] {
					vals[k] = v
				}
			}
			for _, m := range sc.metrics() {
				v, ok := vals[m.key]
				if m.forwarderOnly {
					if ok {
						t.Errorf("%s: direct has a %s figure", m.key, m.label)
					}
					continue
				}
				if !ok || v < 0 {
					t.Errorf("%s = %v, %v", m.key, v, ok)
				}
			}
		})
	}
}

// TestHashTransferCatchesCorruption: a backend that answers with the wrong
// digest must fail the integrity check, not pass quietly.
func TestHashTransferCatchesCorruption(t *testing.T) {
	defer test.CheckRoutines(t)()
	liar, err := listenTCP(func(c *net.TCPConn) {
		var hdr [8]byte
		_, _ = c.Read(hdr[:])
		buf := make([]byte, 64<<10)
		for got := 0; got < 1<<16; {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			got += n
		}
		_, _ = c.Write(make([]byte, 40)) // a zero digest and length

	})
	if err != nil {
		t.Fatal(err)
	}
	defer liar.close()
	err = hashTransfer(liar.addr(), randomBytes(1<<16, 9), 5*time.Second)
	if !errors.Is(err, errIntegrity) {
		t.Fatalf("hashTransfer = %v, want an integrity failure", err)
	}
}

// TestUDPSinkChecks: the sink counts intact datagrams once and flags
// duplicates, wrong payloads and zero-length datagrams.
func TestUDPSinkChecks(t *testing.T) {
	defer test.CheckRoutines(t)()
	payload := randomBytes(dgramSize-dgramHeader, 3)
	s, err := listenUDPSink(payload)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	s.begin(7)
	sent, err := sendDatagrams(s.addr(), 7, payload, 50*time.Millisecond, 20000)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp4", s.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dup := make([]byte, dgramSize)
	copy(dup, []byte{0, 0, 0, 0, 0, 0, 0, 7}) // run 7, sequence 0 again
	copy(dup[dgramHeader:], payload)
	bad := append([]byte(nil), dup...)
	bad[dgramSize-1] ^= 1
	for _, d := range [][]byte{dup, bad, {}} {
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	world.Eventually(t, "every datagram counted", func() bool {
		return s.received.Load()+s.dups.Load()+s.corrupt.Load()+s.empty.Load() == sent+3
	})
	if got := s.received.Load(); got != sent {
		t.Errorf("received %d, sent %d", got, sent)
	}
	for name, n := range map[string]*atomic.Int64{"dups": &s.dups, "corrupt": &s.corrupt, "empty": &s.empty} {
		if n.Load() != 1 {
			t.Errorf("%s = %d, want 1", name, n.Load())
		}
	}
}

// TestFTPCheckWantsRelayPorts: through the relay, a data connection to a
// port outside the relay's range means the reply was not rewritten.
func TestFTPCheckWantsRelayPorts(t *testing.T) {
	c := &ftpClient{dataPort: [2]int{20000, 20999}, dialed: []string{"127.0.0.1:21", "127.0.0.1:40000"}}
	c.log.Write([]byte("227 Entering Passive Mode (127,0,0,1,156,64)\r\n"))
	err := c.check()
	if !errors.Is(err, errIntegrity) || !strings.Contains(err.Error(), "outside") {
		t.Fatalf("check = %v, want an integrity failure naming the port", err)
	}
	c.dialed[1] = "127.0.0.1:20001"
	if err := c.check(); err != nil {
		t.Fatalf("check with a relay port = %v", err)
	}
}
