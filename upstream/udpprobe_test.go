package upstream

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// answerUDP is a UDP socket that answers every datagram with reply.
func answerUDP(t *testing.T, reply string) string {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		for {
			_, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteTo([]byte(reply), from)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c.LocalAddr().String()
}

// TestUDPProbeExpectsAnswer: with ExpectReply a silent UDP upstream (a
// black hole, to a probe) and one giving the wrong answer are marked down
// by the active checks, one that answers as expected stays up; without it
// silence counts as up (TestActiveChecks).
func TestUDPProbeExpectsAnswer(t *testing.T) {
	checkLeaks(t)
	silent, wrong, right := liveUDP(t), answerUDP(t, "nope"), answerUDP(t, "pong 1.0")
	s, logs := newSet(t, Config{Network: "udp", Lists: [][]string{{silent, wrong, right}},
		Health: Health{Interval: 20 * time.Millisecond, Timeout: 100 * time.Millisecond,
			Send: []byte("ping"), Expect: []byte("pong"), ExpectReply: true}})
	s.Start()
	world.Eventually(t, "the silent upstream down", func() bool { return !status(s, silent).Up })
	world.Eventually(t, "the wrong one down", func() bool { return !status(s, wrong).Up })
	time.Sleep(250 * time.Millisecond) // a few more rounds, each longer than the probe timeout
	if !status(s, right).Up {
		t.Errorf("the answering upstream was marked down:\n%s", logs)
	}
	c := s.Begin(0)
	if got := c.Next(); got == nil || got.String() != right {
		t.Errorf("Next = %v, want the answering upstream", got)
	}
	if !strings.Contains(logs.String(), `no answer starting with \"pong\" within 100ms`) {
		t.Errorf("the down line does not say what was missing:\n%s", logs)
	}
}
