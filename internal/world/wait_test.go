package world

import (
	"fmt"
	"sync"
	"testing"
)

// TestLogBufferWaitWakesOnWrite: waiters see lines written by other
// goroutines after they began waiting, and counts are per matching line.
func TestLogBufferWaitWakesOnWrite(t *testing.T) {
	var l LogBuffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 50 {
			fmt.Fprintf(&l, `{"message":"tick","n":%d}`+"\n", i)
		}
		fmt.Fprintln(&l, `{"message":"done"}`)
	}()
	if got := l.Wait(t, "done"); got != `{"message":"done"}` {
		t.Errorf("Wait returned %q", got)
	}
	if got := len(l.WaitCount(t, 50, `"tick"`)); got != 50 {
		t.Errorf("WaitCount returned %d lines, want 50", got)
	}
	wg.Wait()
	if n := l.Count("tick", `"n":4}`); n != 1 {
		t.Errorf(`Count("tick", "n":4}) = %d, want 1`, n)
	}
}
