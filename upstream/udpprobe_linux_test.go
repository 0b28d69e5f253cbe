package upstream

import (
	"errors"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// TestUDPProbeSeesPoweredOffHost: the UDP health check marks down a host on
// the relay's own link that does not answer ARP or neighbour discovery (a
// powered-off player), and says why; an address that resolves and stays
// silent stays up. Linux reports the host unreachable of a failed
// resolution on the probe's connected socket only with IP_RECVERR; without
// it the probe met silence and counted the dead host as up.
func TestUDPProbeSeesPoweredOffHost(t *testing.T) {
	if !world.RunInNetns(t, world.SilentLink(10*time.Millisecond)...) {
		return
	}
	checkLeaks(t)
	for _, tc := range []struct{ dead, reason string }{
		{"10.99.0.2:8100", "no route to host (ICMP host unreachable from 10.99.0.1)"},
		{"[fd00:99::2]:8100", "no route to host (ICMPv6 host unreachable (address unreachable) from fd00:99::1)"},
	} {
		t.Run(tc.dead, func(t *testing.T) {
			silent := liveUDP(t) // on loopback: resolves, never answers
			s, logs := newSet(t, Config{Network: "udp", Lists: [][]string{{tc.dead, silent}},
				Health: Health{Interval: 50 * time.Millisecond, Timeout: time.Second}})
			s.Start()
			line := logs.Wait(t, `"message":"upstream down"`)
			if !world.ContainsAll(line, `"upstream":"`+tc.dead+`"`, "health check", tc.reason) {
				t.Errorf("down line %s, want %s named with %q", line, tc.dead, tc.reason)
			}
			if !status(s, silent).Up {
				t.Errorf("the silent upstream was marked down:\n%s", logs)
			}
		})
	}
}

// TestUDPRetrySeesPoweredOffHost: the re-try of a UDP upstream that a
// session found unreachable (a powered-off host on the LAN) keeps it down,
// though address resolution takes longer than the probe timeout: the re-try
// listens for udpRetryListen at least. It used to take the probe's 200 ms
// of silence as up, and the next session went to the dead host again.
func TestUDPRetrySeesPoweredOffHost(t *testing.T) {
	if !world.RunInNetns(t, world.SilentLink(time.Second)...) {
		return
	}
	checkLeaks(t)
	const dead = "10.99.0.2:8100"
	s, logs := newSet(t, Config{Network: "udp", Lists: [][]string{{dead}},
		Health: Health{Timeout: 200 * time.Millisecond}})
	c := s.Begin(0)
	c.Next().Failed(errors.New("a session's datagrams drew host unreachable"))
	logs.Wait(t, `"message":"upstream down"`)
	// The re-try runs after 1 s; its datagram's ARP gives up 1 s later.
	time.Sleep(2500 * time.Millisecond)
	if status(s, dead).Up || logs.Count(`"message":"upstream up"`) != 0 {
		t.Errorf("the re-try took the powered-off host for up:\n%s", logs)
	}
}
