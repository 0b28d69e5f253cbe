package upstream

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// TestActiveCheckShortageLeavesUp: a health check that could not run for
// want of the relay's own descriptors says nothing of the upstream, which
// stays up and keeps being checked, as after a data plane's dial that
// failed so (TestLocalShortageLeavesUp). Marked down, every upstream of
// every listener would go down in the same round, and stay down until a
// re-try a second or more after the shortage ended.
func TestActiveCheckShortageLeavesUp(t *testing.T) {
	checkLeaks(t)
	const up = "192.0.2.1:80" // never dialled: Probe stands in
	probes := make(chan struct{}, 1)
	s, logs := newSet(t, Config{Lists: [][]string{{up}},
		Health: Health{Interval: 5 * time.Millisecond},
		Probe: func(context.Context, netip.AddrPort) error {
			select {
			case probes <- struct{}{}:
			default:
			}
			return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
		}})
	s.Start()
	// A round's outcome is recorded before the next round probes, so
	// after the third probe the first two rounds are done. (A down
	// upstream would be probed again only by its re-try, a second later.)
	for i := range 3 {
		select {
		case <-probes:
		case <-time.After(world.WaitLimit):
			t.Fatalf("probe %d never came", i+1)
		}
	}
	if !status(s, up).Up {
		t.Errorf("a health check short of descriptors marked the upstream down:\n%s", logs)
	}
	if strings.Contains(logs.String(), "upstream down") {
		t.Errorf("a local shortage logged an outage:\n%s", logs)
	}
}
