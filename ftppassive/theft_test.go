package ftppassive

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"

	"github.com/edgerelay/relay/acl"
	testworld "github.com/edgerelay/relay/internal/world"
)

// theftFlood connects n times to the relay's data port ap from 127.0.0.2
// (each is refused) and waits until the relay has counted them all.
func theftFlood(t *testing.T, w *world, ap netip.AddrPort, n int) {
	t.Helper()
	for i := range n {
		thief, err := dialFrom(t, "127.0.0.2", ap)
		if errors.Is(err, syscall.ECONNRESET) {
			// The relay accepted and refused it before the dial returned:
			// an attempt it counts all the same.
			continue
		}
		if err != nil {
			// Any other failure never reached the relay, which then counts
			// fewer than n: say so here rather than time out below (seen
			// once under load: 39 of 40 counted, the error dropped).
			t.Fatalf("thief %d of %d cannot connect: %v", i+1, n, err)
		}
		thief.SetReadDeadline(time.Now().Add(stepTimeout))
		if got, _ := io.Copy(io.Discard, thief); got != 0 {
			t.Fatalf("a thief read %d bytes", got)
		}
		thief.Close()
	}
	testworld.Eventually(t, fmt.Sprintf("%d theft attempts counted", n), func() bool {
		return w.proxy.Stats().DataTheftAttempts.Load() == uint64(n)
	})
}

// pasvPort runs a PASV the server answers and returns the relay's port.
func (tr *transcript) pasvPort() int {
	tr.t.Helper()
	tr.clientSends("PASV\r\n")
	tr.serverGets()
	tr.serverSends("227 Entering Passive Mode (10,9,8,7,19,137).\r\n")
	return tr.relayPort(tr.clientGets(), dataRange)
}

// TestDataTheftFloodSharesACLBudget: connections to a data port from a
// foreign address are logged through Config.Refused, which the daemon
// gives the ACL's per-listener budget (acl.Set.Refusals): a flood costs
// the burst and one "suppressed" summary, not a warning each (7 268
// attempts in a second wrote 3 392 warnings before).
func TestDataTheftFloodSharesACLBudget(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	set := &acl.Set{LogBurst: 3, LogInterval: time.Hour}
	tr := newTranscript(t, Config{DataPorts: dataRange}, func(p *Proxy) {
		p.cfg.Refused = set.Refusals(p.cfg.Name, acl.ProtoTCP, p.cfg.Log)
	})
	tr.login()
	port := tr.pasvPort()
	const attempts = 40
	theftFlood(t, tr.w, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), attempts)
	set.Flush()

	logs := tr.w.logs
	if n := logs.Count("data connection from a foreign address refused"); n != 0 {
		t.Errorf("%d theft warnings of the relay's own, want none: they go through Refused", n)
	}
	if n := logs.Count("client refused", "data_theft", "127.0.0.2"); n != 3 {
		t.Errorf("%d theft refusals logged one by one, want the burst of 3", n)
	}
	summary := fmt.Sprintf("%d rejections suppressed", attempts-3)
	if n := logs.Count(summary, `"listener":"ftp-test"`); n != 1 {
		t.Errorf("no summary %q", summary)
	}
	if c := set.Counts(); len(c) != 1 || c[0].Refused != attempts {
		t.Errorf("acl counts %+v, want %d refused", c, attempts)
	}
}

// TestDataTheftFloodSampledWithoutRefused: without Config.Refused the
// proxy's own warning is sampled: a few a second, not one per attempt.
func TestDataTheftFloodSampledWithoutRefused(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	tr := newTranscript(t, Config{DataPorts: dataRange})
	tr.login()
	port := tr.pasvPort()
	const attempts = 40
	start := time.Now()
	theftFlood(t, tr.w, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), attempts)
	seconds := int(time.Since(start)/time.Second) + 1
	n := tr.w.logs.Count("data connection from a foreign address refused")
	if n == 0 || n > theftBurst*(seconds+1) {
		t.Errorf("%d theft warnings for %d attempts in under %d s, want 1 to %d", n, attempts, seconds, theftBurst*(seconds+1))
	}
	if !strings.Contains(tr.w.logs.String(), `"from":"127.0.0.2`) {
		t.Error("the warning does not name the thief")
	}
}
