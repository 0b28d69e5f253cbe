package forward

import "sync"

// livePairs is the set of a Listener's running plain forwards, so that
// cancelling the listener's context (Shutdown past its grace, Close) stops
// every one of them with one context.AfterFunc for the whole listener.
//
// Why not context.AfterFunc per pair: on the listener's shared context it
// costs four allocations and a map insert and delete under that context's
// lock per connection (2-3 % of the relay's CPU in BenchmarkConnRate);
// here a pair is linked in and out of a list under a lock, and allocates
// nothing.
type livePairs struct {
	mu      sync.Mutex // guards the following and every listed pair's prev and next
	head    *pair
	stopped bool // stopAll ran: pairs added later are stopped at once
}

// add lists p; false means the listener is stopping, and p must be
// stopped by the caller instead.
func (s *livePairs) add(p *pair) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	p.next = s.head
	if s.head != nil {
		s.head.prev = p
	}
	s.head = p
	return true
}

// remove unlists p; it is a no-op for a pair that add refused.
func (s *livePairs) remove(p *pair) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.prev == nil && s.head != p {
		return
	}
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		s.head = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	}
	p.prev, p.next = nil, nil
}

// stopAll stops every listed pair and every pair added from now on. The
// pairs are stopped outside the lock: stop takes the pair's own lock and
// wakes parked directions, and a pair ending meanwhile removes itself.
func (s *livePairs) stopAll() {
	s.mu.Lock()
	s.stopped = true
	var all []*pair
	for p := s.head; p != nil; p = p.next {
		all = append(all, p)
	}
	s.mu.Unlock()
	for _, p := range all {
		p.shutdown()
	}
}
