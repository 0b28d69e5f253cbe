package forward

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// tagged is a backend handler that says which backend it is, then echoes.
func tagged(tag string) func(net.Conn) {
	return func(c net.Conn) {
		if _, err := c.Write([]byte(tag)); err == nil {
			world.Echo(c)
		}
	}
}

// served connects through the relay and returns the tag of the backend
// that answered and how long that took.
func served(t *testing.T, r *relay) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	c := r.dial(t, 0)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	tag := make([]byte, 1)
	if _, err := io.ReadFull(c, tag); err != nil {
		t.Fatalf("no backend answered: %v", err)
	}
	return string(tag), time.Since(start)
}

// TestBlackholedPrimary: a primary that drops SYNs costs the first client
// one connect timeout; the next ones go straight to the backup; the
// primary is logged down once, and takes new connections again once a
// background re-try finds it answering.
func TestBlackholedPrimary(t *testing.T) {
	checkLeaks(t)
	const timeout = 500 * time.Millisecond
	primary := world.NewSilent(t)
	backup := world.NewBackend(t, tagged("B"))
	r := startRelay(t, Config{Upstreams: [][]string{{primary.Addr(), backup.Addr()}}, ConnectTimeout: timeout})

	tag, took := served(t, r)
	if tag != "B" || took < timeout-50*time.Millisecond {
		t.Fatalf("first connection: backend %q after %v, want the backup after the connect timeout", tag, took)
	}
	t.Logf("first connection: %v", took)
	var slowest time.Duration
	for i := range 10 {
		tag, took := served(t, r)
		if tag != "B" || took >= 100*time.Millisecond {
			t.Errorf("connection %d: backend %q after %v, want the backup within 100ms", i+2, tag, took)
		}
		slowest = max(slowest, took)
	}
	t.Logf("next 10 connections: slowest %v", slowest)
	logs := r.logs.String()
	if n := strings.Count(logs, `"message":"upstream down"`); n != 1 {
		t.Errorf("%d down lines, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs, `"upstream":"`+primary.Addr()+`","error":"dial tcp `+primary.Addr()+`: i/o timeout"`) {
		t.Errorf("the down line does not name the primary and the timeout:\n%s", logs)
	}
	if n := r.Stats().DialFailures.Load(); n != 1 {
		t.Errorf("DialFailures = %d, want 1", n)
	}

	primary.Serve(t, tagged("P"))
	r.logs.Wait(t, `"message":"upstream up"`, primary.Addr(), `"down_for_ms"`)
	for i := range 3 {
		if tag, _ := served(t, r); tag != "P" {
			t.Errorf("after recovery, connection %d went to %q, want the primary", i, tag)
		}
	}
}

// TestEveryUpstreamDown: with both upstreams refused, the first client
// finds out by dialling both, later ones are closed at once, and the
// outage costs one line, not one per client.
func TestEveryUpstreamDown(t *testing.T) {
	checkLeaks(t)
	a, b := world.DeadAddr(t), world.DeadAddr(t)
	r := startRelay(t, Config{Upstreams: [][]string{{a, b}}})
	for i := range 10 {
		if took := expectClosed(t, r.dial(t, 0), time.Second); took > 100*time.Millisecond {
			t.Errorf("client %d closed after %v", i, took)
		}
	}
	world.Eventually(t, "ten access lines", func() bool {
		return strings.Count(r.logs.String(), `"end":"upstream_unreachable"`) == 10
	})
	logs := r.logs.String()
	if n := strings.Count(logs, "every upstream down"); n != 1 {
		t.Errorf("%d outage lines, want 1:\n%s", n, logs)
	}
	if n := strings.Count(logs, `"message":"upstream down"`); n != 2 {
		t.Errorf("%d down lines, want 2:\n%s", n, logs)
	}
	if n := r.Stats().DialFailures.Load(); n != 2 {
		t.Errorf("DialFailures = %d, want 2 (the other clients dialled nothing)", n)
	}
	// Every client was closed unserved, dialling or not: the page must not
	// read 10 accepted, 2 dial failures as 8 served.
	if n := r.Stats().Unreachable.Load(); n != 10 {
		t.Errorf("Unreachable = %d, want 10", n)
	}
}
