//go:build linux

package forward

import (
	"context"
	"io"
	"testing"
	"time"
)

// TestParkAfterParkerClosed: a direction that finds nothing to read after
// its parker closed was never parked (park refuses at once), so it must
// wait in the poller as parker.close promises, not end its goroutine: the
// pair still carries bytes both ways and ends, with end called once, when
// the peers close.
func TestParkAfterParkerClosed(t *testing.T) {
	checkLeaks(t)
	pool := NewPool(0)
	pk := pool.parker()
	if pk == nil {
		t.Skip("no parker on this system")
	}
	a, ra := tcpPair(t) // a: the client; ra: the relay's end of it
	rb, b := tcpPair(t) // rb: the relay's end to the upstream; b: the upstream
	pool.Close()        // the parker is closed before anything parks
	ended := make(chan Result, 2)
	startPipe(context.Background(), ra, rb, PipeOptions{
		IdleTimeout: time.Minute, Pool: pool, parker: pk, parkAfter: 0,
	}, func(res Result) { ended <- res }, false)

	deadline := time.Now().Add(10 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	buf := make([]byte, 3)
	for i := range 3 { // each round: both directions idle, then woken by bytes
		if _, err := a.Write([]byte("abc")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(b, buf); err != nil {
			t.Fatalf("round %d: upstream read: %v", i, err)
		}
		if _, err := b.Write([]byte("xyz")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(a, buf); err != nil {
			t.Fatalf("round %d: client read: %v", i, err)
		}
		time.Sleep(10 * time.Millisecond) // let both directions find nothing to read
	}
	a.CloseWrite()
	b.CloseWrite()
	select {
	case res := <-ended:
		if res.End != EndEOF || res.AtoB != 9 || res.BtoA != 9 {
			t.Errorf("result %+v, want eof with 9 bytes each way", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the pair never ended: a direction that could not park was dropped")
	}
	if n := pk.parked.Load(); n != 0 {
		t.Errorf("%d directions counted parked", n)
	}
}
