package acl

import (
	"net/netip"
	"sync"
	"time"
)

// RecentCap is how many rejections a Set keeps for Recent: enough to see
// who was turned away a moment ago, bounded so a scan cannot grow it.
const RecentCap = 32

// Rejection is one client a guard turned away.
type Rejection struct {
	Time     time.Time
	Listener string
	Proto    Proto
	Client   netip.AddrPort
	// Rule is the deciding line as file:line and its text, or "no
	// matching line".
	Rule string
}

// recentRing holds the last RecentCap rejections of every guard of a Set.
type recentRing struct {
	mu   sync.Mutex // guards the following
	buf  [RecentCap]Rejection
	next int // index the next rejection goes to
	n    int // filled entries, at most RecentCap
}

func (r *recentRing) add(rj Rejection) {
	r.mu.Lock()
	r.buf[r.next] = rj
	r.next = (r.next + 1) % RecentCap
	r.n = min(r.n+1, RecentCap)
	r.mu.Unlock()
}

// Recent returns the last rejections of every guard, newest first, at most
// RecentCap of them.
func (s *Set) Recent() []Rejection {
	r := &s.recent
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Rejection, 0, r.n)
	for i := 1; i <= r.n; i++ {
		out = append(out, r.buf[(r.next-i+RecentCap)%RecentCap])
	}
	return out
}

// ruleText says which line decided d, for logs and Recent.
func ruleText(d Decision) string {
	if d.Rule == nil {
		return "no matching line"
	}
	return d.Rule.Where() + " " + d.Rule.String()
}
