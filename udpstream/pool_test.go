package udpstream

import (
	"testing"
	"time"

	testworld "github.com/edgerelay/relay/internal/world"
)

// BenchmarkBatchPool is the pool's cost per batch (of up to 32 datagrams)
// with readers on every core taking and handing back batches.
func BenchmarkBatchPool(b *testing.B) {
	bp := newBatchPool(batchSize, 0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bp.get().release()
		}
	})
}

// TestBatchPoolTrim: a trim frees the batches that stayed in the pool since
// the trim before, and keeps the ones taken meanwhile.
func TestBatchPoolTrim(t *testing.T) {
	bp := newBatchPool(1, 0)
	var held []*batch
	for range 5 {
		held = append(held, bp.get())
	}
	for _, b := range held {
		b.release()
	}
	bp.trim() // the five were in use since the (absent) trim before: kept
	if got := len(bp.free); got != 5 {
		t.Fatalf("%d free after the first trim, want 5", got)
	}
	a, b := bp.get(), bp.get() // two in use again; three stay unused
	a.release()
	b.release()
	bp.trim()
	if got := len(bp.free); got != 2 {
		t.Fatalf("%d free after the second trim, want the 2 used since the first", got)
	}
	if bp.free[0] != b && bp.free[1] != b {
		t.Fatal("a batch used since the last trim was freed")
	}
	bp.trim()
	if got := len(bp.free); got != 0 {
		t.Fatalf("%d free after a trim period without use, want 0", got)
	}
	for range maxFreeBatches + 3 {
		bp.put(&batch{pool: bp})
	}
	if got := len(bp.free); got != maxFreeBatches {
		t.Fatalf("%d free, want at most %d", got, maxFreeBatches)
	}
}

// TestBatchPoolCap: a capped pool makes no batch beyond its cap; a get
// waits for one to be handed back, and the oldest waiter gets it first.
func TestBatchPoolCap(t *testing.T) {
	bp := newBatchPool(1, 2)
	a, b := bp.get(), bp.get()
	if c := bp.tryGet(); c != nil {
		t.Fatal("tryGet made a third batch past a cap of 2")
	}
	waiters := func() int {
		bp.mu.Lock()
		defer bp.mu.Unlock()
		return len(bp.waiting)
	}
	got1, got2 := make(chan *batch, 1), make(chan *batch, 1)
	go func() { got1 <- bp.get() }()
	testworld.Eventually(t, "the first get to wait", func() bool { return waiters() == 1 })
	go func() { got2 <- bp.get() }()
	testworld.Eventually(t, "the second get to wait", func() bool { return waiters() == 2 })
	b.release()
	if c := <-got1; c != b {
		t.Fatal("the first waiter did not get the batch handed back")
	}
	select {
	case <-got2:
		t.Fatal("the second waiter got a batch while both were in use")
	default:
	}
	a.release()
	if c := <-got2; c != a {
		t.Fatal("the second waiter did not get the next batch handed back")
	}
	if bp.live != 2 || bp.peak != 2 {
		t.Fatalf("live %d, peak %d: want 2 and 2", bp.live, bp.peak)
	}
	// Idle: trims free both, and the cap counts only what is left.
	a.release()
	b.release()
	bp.trim()
	bp.trim()
	if bp.live != 0 || len(bp.free) != 0 {
		t.Fatalf("live %d, free %d after two idle trims, want 0 and 0", bp.live, len(bp.free))
	}
	x, y := bp.tryGet(), bp.tryGet()
	if x == nil || y == nil || x == a || x == b || y == a || y == b {
		t.Fatal("the pool did not make two new batches after trimming its own")
	}
}

// TestBatchPoolTrimDue: relays that share a pool each trim it once a
// period; between them it is trimmed once a period, not once per relay.
func TestBatchPoolTrimDue(t *testing.T) {
	bp := newBatchPool(1, 0)
	bp.get().release()
	t0 := time.Now()
	bp.trimDue(t0) // the batch was in use since the last trim: kept
	bp.trimDue(t0.Add(batchTrimPeriod / 2))
	if len(bp.free) != 1 {
		t.Fatalf("%d free: a second relay's trim half a period later freed the batch", len(bp.free))
	}
	bp.trimDue(t0.Add(batchTrimPeriod))
	if len(bp.free) != 0 {
		t.Fatalf("%d free after a period unused, want 0", len(bp.free))
	}
}

// TestBuffersUse: Use reports the bytes of the batches readers hold and of
// those kept free, apart, and the cap; a batch freed by trims is in
// neither.
func TestBuffersUse(t *testing.T) {
	bufs := NewBuffers()
	const per = batchSize * msgBufSize // 2 MiB
	want := func(inUse, free int64) {
		t.Helper()
		got := bufs.Use()
		if w := (BufferUse{InUse: inUse * per, Free: free * per, Limit: 8 * per}); got != w {
			t.Fatalf("Use() = %+v, want %+v", got, w)
		}
	}
	want(0, 0)
	a, b, c := bufs.pool.get(), bufs.pool.get(), bufs.pool.get()
	want(3, 0)
	a.release()
	b.release()
	want(1, 2)
	bufs.pool.trim() // a and b were taken since the last trim: kept
	bufs.pool.trim() // and unused since this one: freed
	want(1, 0)
	c.release()
	want(0, 1)
}

// TestClosedRelayFreesItsBuffers: a relay that closes leaves no batch
// free in its pool. The free batches are otherwise freed by the trims of
// the relays' sweeps, and with the last UDP listener of a process gone (a
// reload removed it) nothing would trim them: up to 16 MiB for good.
func TestClosedRelayFreesItsBuffers(t *testing.T) {
	checkLeaks(t)
	bufs := NewBuffers()
	w := newBurstWorld(t, nil, bufs, false)
	w.send(1, 2, burstSize)
	w.checkExact(2)
	if u := bufs.Use(); u.Free == 0 && u.InUse == 0 {
		t.Fatal("the burst left no batch in the pool: nothing to check")
	}
	if err := w.r.Close(); err != nil {
		t.Fatal(err)
	}
	if u := bufs.Use(); u.Free != 0 || u.InUse != 0 {
		t.Fatalf("after Close the pool holds %+v, want nothing", u)
	}
}
