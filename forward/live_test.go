package forward

import (
	"context"
	"testing"
)

// TestLivePairsStopAll: stopAll stops the pairs still listed and no pair
// that was removed, and a pair made afterwards is stopped at once (the
// listener's context ended between its dial and its pipe).
func TestLivePairsStopAll(t *testing.T) {
	var live livePairs
	opt := PipeOptions{live: &live}
	newTCPPair := func() *pair {
		a, _ := tcpPair(t)
		b, _ := tcpPair(t)
		return newPair(context.Background(), a, b, opt)
	}
	first, middle, last := newTCPPair(), newTCPPair(), newTCPPair()
	live.remove(middle)
	live.remove(middle) // a second remove changes nothing
	live.stopAll()
	for name, p := range map[string]*pair{"first": first, "last": last} {
		if end, _ := p.result(); !p.stopped.Load() || end != EndShutdown {
			t.Errorf("%s pair: stopped %v, end %q; want stopped with %q", name, p.stopped.Load(), end, EndShutdown)
		}
	}
	if middle.stopped.Load() {
		t.Error("a removed pair was stopped")
	}
	late := newTCPPair()
	if end, _ := late.result(); !late.stopped.Load() || end != EndShutdown {
		t.Errorf("pair made after stopAll: stopped %v, end %q", late.stopped.Load(), end)
	}
	live.remove(late) // refused by add: nothing to unlink
	live.remove(first)
	live.remove(last)
	if live.head != nil {
		t.Error("list not empty after removing every pair")
	}
}
