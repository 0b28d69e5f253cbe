package upstream

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// TestReset: a Reset for what goes over the connection (ResetReached)
// brings back the upstream whose handshake failed and leaves the one whose
// connect was refused down; ResetAll brings back both. An outage a Set
// took over from the one it replaces ends the same way, before Start, and
// a port whose outage ended logs the next one.
func TestReset(t *testing.T) {
	checkLeaks(t)
	refused := world.DeadAddr(t)
	venue := world.NewBackend(t, world.Echo)
	lists := [][]string{{refused, venue.Addr()}}
	s, logs := newSet(t, Config{Lists: lists, Timeout: time.Second})
	if got := s.Reset(ResetAll); got != nil {
		t.Errorf("nothing down: Reset brought back %v", got)
	}
	if _, err := connect(s, 0, venue.Addr()); err == nil || errors.Is(err, ErrAllDown) {
		t.Fatalf("first walk: %v, want both tried", err)
	}
	if _, err := connect(s, 0); !errors.Is(err, ErrAllDown) {
		t.Fatalf("second walk: %v, want ErrAllDown", err)
	}
	if got := s.Reset(ResetReached); !slices.Equal(got, []string{venue.Addr()}) {
		t.Errorf("ResetReached brought back %v, want the venue only", got)
	}
	if status(s, refused).Up || !status(s, venue.Addr()).Up {
		t.Errorf("after ResetReached: %+v", s.Snapshot())
	}
	if got, err := connect(s, 0); err != nil || got != venue.Addr() {
		t.Errorf("after ResetReached: %q %v, want the venue at once", got, err)
	}
	// The venue fails again: a new outage of the port, logged again.
	if _, err := connect(s, 0, venue.Addr()); err == nil {
		t.Fatal("the venue answered")
	}
	if _, err := connect(s, 0); !errors.Is(err, ErrAllDown) {
		t.Fatalf("third walk: %v, want ErrAllDown", err)
	}
	if n := strings.Count(logs.String(), "every upstream down"); n != 2 {
		t.Errorf("%d 'every upstream down' lines, want 2 (an outage Reset ended, then a new one):\n%s", n, logs)
	}

	// A successor takes both outages over, reached or not; Reset before
	// Start ends the reached one, whose pending re-try then never runs.
	next, nextLogs := newSet(t, Config{Lists: lists, Timeout: time.Second, Replaces: s})
	if status(next, refused).Up || status(next, venue.Addr()).Up {
		t.Fatalf("the successor did not take the outages over: %+v", next.Snapshot())
	}
	if got := next.Reset(ResetReached); !slices.Equal(got, []string{venue.Addr()}) {
		t.Errorf("successor: ResetReached brought back %v, want the venue only", got)
	}
	next.Start()
	if got, err := connect(next, 0); err != nil || got != venue.Addr() {
		t.Errorf("successor: %q %v, want the venue at once", got, err)
	}
	if got := next.Reset(ResetAll); !slices.Equal(got, []string{refused}) {
		t.Errorf("successor: ResetAll brought back %v, want the refused one", got)
	}
	if !status(next, refused).Up {
		t.Errorf("ResetAll left %s down", refused)
	}
	if strings.Contains(nextLogs.String(), "upstream up") {
		t.Errorf("Reset logged (the caller says why):\n%s", nextLogs)
	}
}

// TestResetKeepsReachedOfLatestFailure: an upstream whose handshake
// failed and which then stopped answering at all (its re-try's connect
// is refused) counts as a connect failure: ResetReached leaves it down.
func TestResetKeepsReachedOfLatestFailure(t *testing.T) {
	checkLeaks(t)
	venue := world.NewBackend(t, world.Echo)
	addr := venue.Addr()
	s, _ := newSet(t, Config{Lists: [][]string{{addr}}, Timeout: time.Second})
	if _, err := connect(s, 0, addr); err == nil {
		t.Fatal("the venue answered")
	}
	venue.Close()
	// The first re-try, a second later, is refused.
	world.Eventually(t, "a refused re-try", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.targets[netip.MustParseAddrPort(addr)].reached
	})
	if got := s.Reset(ResetReached); got != nil {
		t.Errorf("ResetReached brought back %v, whose connect is refused now", got)
	}
}
