//go:build linux

package forward

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// TestBusyPairNeverParks: a pair with an exchange every 0.3 parkAfter is
// never quiet for parkAfter, so after the front's handoff (one bare park,
// woken by the next exchange) no direction of it parks, as usual or
// bare; once it falls quiet, it goes bare after parkAfter, and wakes
// whole. The idle timeout is 16 parkAfter, so min(idle/16, 1 s), the
// grain of the pair's clock before clockGrain, is parkAfter itself, as
// with the defaults (1 h, 1 s).
//
// It failed with that grain: quietFor read the pair's last activity up
// to a grain (= parkAfter) stale, and a
// direction whose wake-up deadline (parkAfter after its last one, or
// after the pair's wake) fell between a grain after the stored time and
// the next exchange parked; both deadlines fire together, so the pair
// went bare, and its wake set both deadlines to fire again exactly a
// parkAfter after the exchange that woke it: a bare park and wake (about
// 60 syscalls) about every parkAfter, for every busy pair (front: 1
// plain and 2 bare parks in 14 exchanges; engine: 1-4 and 1-3), and a
// pair fallen quiet went bare after 280-490 ms of its 700.
func TestBusyPairNeverParks(t *testing.T) {
	checkLeaks(t)
	const parkAfter = 700 * time.Millisecond
	const period, exchanges = parkAfter * 3 / 10, 14
	for _, front := range []bool{true, false} {
		t.Run(fmt.Sprintf("front=%v", front), func(t *testing.T) {
			t.Parallel()
			backend := world.NewBackend(t, world.Echo)
			r := listenRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}, IdleTimeout: 16 * parkAfter})
			r.parkAfter = parkAfter
			if !front {
				r.engineOnly()
			}
			var parks atomic.Int64
			r.parker.parking = func(*direction) { parks.Add(1) }
			r.serve(t)
			c := r.dial(t, 0)
			for i := range exchanges {
				if i > 0 {
					time.Sleep(period) // the client's think time: the traffic under test
				}
				msg := fmt.Sprint(i % 10)
				if got := roundTrip(t, c, msg); got != msg {
					t.Fatalf("exchange %d: echo %q", i, got)
				}
			}
			quiet := time.Now()
			wantBare := int64(0)
			if front {
				wantBare = 1 // the handoff
			}
			if n, b := parks.Load(), r.parker.bareParks.Load(); n != 0 || b != wantBare {
				t.Errorf("%d parks and %d bare parks in %d exchanges %v apart, want 0 and %d",
					n, b, exchanges, period, wantBare)
			}
			// Quiet now: it goes bare once quiet for parkAfter (less the
			// grain of its clock, parkAfter/16), not before.
			world.Eventually(t, "the quiet pair parked bare", func() bool {
				return r.parker.bare.Load() == 1 && r.pool.Parked() == 2
			})
			if took := time.Since(quiet); took < parkAfter-parkAfter/8 {
				t.Errorf("parked bare %v after its last exchange, want parkAfter (%v)", took, parkAfter)
			}
			if got := roundTrip(t, c, "z"); got != "z" {
				t.Fatalf("echo after the bare park %q", got)
			}
			c.Close()
			r.logs.Wait(t, `"end":"eof"`, fmt.Sprintf(`"bytes_in":%d`, exchanges+1))
		})
	}
}
