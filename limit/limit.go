// Package limit enforces limits per client source: how many connections one
// source may hold open at once and how fast it may open new ones (a token
// bucket). A source is a client address cut to a prefix length, so that one
// IPv6 host, which owns a whole /64, counts once. Table is the one type: a
// listener asks it at accept time, after the ACL and before any upstream
// dial, and tells it when an admitted connection ends.
//
// Table's memory is bounded whatever the number of sources that knock: it
// tracks at most MaxSources of them, forgets a source once it holds no
// connection and its bucket is full again (at once on its last Release,
// else within 10 s when more than 1 024 are tracked, traffic or not), and
// when the table is full a source that holds no connection is forgotten to
// make room (which forgives its rate debt; a source holding connections is
// never forgotten). Once a flood's sources are forgotten, so is the memory
// they took.
//
// A reload that changes a listener replaces its Table: Config.Replaces
// hands the new Table the sources of the old one, so the connections still
// open on the old listener go on counting against the new limits, and each
// is released once, into the one count; TakeOver, once the new listener
// serves, carries the rate allowances over to its rate (see reload.go).
//
// Where its job ends: limit decides and counts; the listener closes the
// connection, logs the refusal and exports the counters.
package limit

import (
	"errors"
	"math"
	"net/netip"
	"sync"
	"time"
)

// Why Acquire refused a client. The texts are the "reason" of log lines.
var (
	ErrTooMany = errors.New("limit: too many connections from this source")
	ErrTooFast = errors.New("limit: connection rate of this source exceeded")
	ErrFull    = errors.New("limit: source table full of sources holding connections")
)

// Defaults for the zero values of Config.
const (
	DefaultIPv4Prefix = 32
	DefaultIPv6Prefix = 64
	DefaultMaxSources = 65536
)

// sweepEvery bounds how often a full table is swept whole: between sweeps a
// newcomer to a full table evicts one idle source instead, so a flood of new
// sources costs O(1) per connection, not a walk of the table.
const sweepEvery = time.Second

// A table above expireAbove sources is swept every expireEvery by a timer
// that the source taking it past expireAbove arms, and that re-arms itself
// while the table stays above it: sources that left are forgotten whether
// or not others keep arriving, and a table at rest runs no timer.
// (Forgetting them on the way, a few per Acquire, cost 1.6 us per
// connection in BenchmarkAcquireRelease: a Go map walks its empty slots to
// find live ones.) Below it, a table is small enough to keep them.
//
// A Go map never gives back the buckets of its largest size, even once
// emptied: 7 MiB for 65 536 sources, kept for good after one scan. So a
// sweep that leaves fewer than a quarter of the most sources the map has
// held moves them to a map of their size (TestFloodGivesMemoryBack).
const (
	expireAbove = 1024
	expireEvery = 10 * time.Second
)

// Config sets the limits of one Table. The zero value limits nothing.
type Config struct {
	// MaxConns caps the connections one source holds open at once. Zero:
	// unlimited.
	MaxConns int
	// Rate is the sustained number of new connections per second one
	// source may open. Zero: unlimited.
	Rate float64
	// Burst is how many connections a source may open at once before Rate
	// applies. Zero: Rate rounded up, at least 1.
	Burst int
	// IPv4Prefix and IPv6Prefix are the prefix lengths that make one
	// source. Zero: 32 (each address) and 64 (each IPv6 subnet).
	IPv4Prefix, IPv6Prefix int
	// MaxSources bounds the sources tracked at once. Zero: 65536.
	MaxSources int
	// Now is the clock. nil: time.Now. A Table that shares the sources of
	// Replaces keeps their clock.
	Now func() time.Time
	// Replaces is the Table of the listener this one succeeds on a reload.
	// With the same IPv4Prefix and IPv6Prefix, the new Table shares its
	// sources: the connections Replaces admitted count against this
	// Config's limits, and whichever Table releases one releases it once.
	// Each source's rate allowance carries over once the owner calls
	// TakeOver (see reload.go). With other prefix lengths, or nil, the
	// Table starts empty.
	Replaces *Table
}

// Table tracks the sources of one listener. Its methods are safe for
// concurrent use; the zero Table is not usable, call New.
type Table struct {
	maxConns   int32
	interval   int64 // nanoseconds a source earns one token in; 0: no rate limit
	tolerance  int64 // (burst-1) * interval: how far ahead a source may run
	maxSources int
	src        *sources // shared with the Tables that replace this one
}

// sources are the counts of a Table: the one owner of every source's
// connections and rate stamp, shared by a Table and its successors on
// reloads (Config.Replaces), which decide with their own limits. Sharing
// costs the hot path one pointer load.
type sources struct {
	v4, v6 int
	now    func() time.Time
	origin time.Time // stamps are nanoseconds since origin (monotonic)

	every time.Duration // period of the sweep timer: expireEvery; tests shorten it

	mu        sync.Mutex // guards the following
	m         map[netip.Prefix]source
	peak      int // the most sources m has held: what its buckets are sized for
	lastSweep int64
	timer     *time.Timer // the sweep timer (expire), made on first use
	armed     bool        // timer will fire
	// interval and tolerance are the rate the stamps are charged at: the
	// one of the Table that made the sources or last took them over.
	interval, tolerance int64
}

// source is what a Table keeps per source: 16 bytes beside its key. The
// rate limit is the generic cell rate algorithm: next is the theoretical
// arrival time of the source's next connection, so one stamp replaces a
// token count and a refill time. A source with no connection whose next is
// past is in the state of one never seen, and may be forgotten. A source
// never charged to a rate has next 0.
type source struct {
	next  int64 // stamp; a connection at now is allowed if now >= next-tolerance
	conns int32
}

// New returns a Table for cfg.
func New(cfg Config) *Table {
	t := &Table{
		maxConns:   int32(min(max(cfg.MaxConns, 0), math.MaxInt32)),
		maxSources: orDefault(cfg.MaxSources, DefaultMaxSources),
	}
	if cfg.Rate > 0 {
		t.interval = max(int64(float64(time.Second)/cfg.Rate), 1)
		burst := cfg.Burst
		if burst <= 0 {
			burst = DefaultBurst(cfg.Rate)
		}
		t.tolerance = int64(burst-1) * t.interval
	}
	v4, v6 := orDefault(cfg.IPv4Prefix, DefaultIPv4Prefix), orDefault(cfg.IPv6Prefix, DefaultIPv6Prefix)
	if old := cfg.Replaces; old != nil && old.src.v4 == v4 && old.src.v6 == v6 {
		t.src = old.src // at old's rate until TakeOver (reload.go)
		return t
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	t.src = &sources{v4: v4, v6: v6, now: now, origin: now(), every: expireEvery,
		m: make(map[netip.Prefix]source), interval: t.interval, tolerance: t.tolerance}
	return t
}

// DefaultBurst is the burst of a Config that sets Rate and no Burst: one
// second's worth of connections, at least one.
func DefaultBurst(rate float64) int {
	return max(int(math.Ceil(min(rate, math.MaxInt32))), 1)
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// Key returns the source client counts toward: its address cut to the
// configured prefix length.
func (t *Table) Key(client netip.Addr) netip.Prefix {
	client = client.Unmap()
	bits := t.src.v6
	if client.Is4() {
		bits = t.src.v4
	}
	p, err := client.Prefix(min(bits, client.BitLen()))
	if err != nil {
		return netip.Prefix{} // an invalid address: every one counts as one source
	}
	return p
}

// Acquire decides whether client may open one more connection now. On nil
// the connection holds a slot until Release(client); otherwise nothing is
// held, and the error says which limit refused it.
//
// Hot path: one map lookup and store under a mutex, no allocation once the
// map has grown to its working size (BenchmarkAcquireRelease).
func (t *Table) Acquire(client netip.AddrPort) error {
	key := t.Key(client.Addr())
	now := t.stamp()
	t.src.mu.Lock()
	defer t.src.mu.Unlock()
	s, known, ok := t.findLocked(key, now)
	if !ok {
		return ErrFull
	}
	if t.maxConns > 0 && s.conns >= t.maxConns {
		return ErrTooMany
	}
	if t.interval > 0 {
		if now < s.next-t.tolerance {
			return ErrTooFast
		}
		s.next = max(s.next, now) + t.interval
	}
	s.conns++
	t.storeLocked(key, s, known)
	return nil
}

// Take charges up to n events (datagrams, say) of client to its rate and
// returns how many fit, the first of them: a rate limit with no connection
// held, for a Table whose Config sets Rate. Without a Rate all n fit.
func (t *Table) Take(client netip.AddrPort, n int) int {
	if t.interval == 0 {
		return n
	}
	key := t.Key(client.Addr())
	now := t.stamp()
	t.src.mu.Lock()
	defer t.src.mu.Unlock()
	s, known, ok := t.findLocked(key, now)
	if !ok {
		return 0
	}
	// The k-th event fits while next+(k-1)*interval-tolerance <= now.
	next := max(s.next, now)
	fit := int((now + t.tolerance - next) / t.interval)
	if now+t.tolerance < next {
		fit = -1
	}
	fit = min(fit+1, n)
	if fit <= 0 {
		return 0
	}
	s.next = next + int64(fit)*t.interval
	t.storeLocked(key, s, known)
	return fit
}

// findLocked returns key's state (zero if unknown) and whether key was
// known; ok is false when key is new and the table has no room for it.
func (t *Table) findLocked(key netip.Prefix, now int64) (s source, known, ok bool) {
	s, known = t.src.m[key]
	if !known && len(t.src.m) >= t.maxSources && !t.makeRoomLocked(now) {
		return s, false, false
	}
	return s, known, true
}

// storeLocked writes key's state; a new key may arm the sweep timer.
func (t *Table) storeLocked(key netip.Prefix, s source, known bool) {
	src := t.src
	src.m[key] = s
	if known {
		return
	}
	src.peak = max(src.peak, len(src.m))
	if len(src.m) > expireAbove && !src.armed {
		src.armed = true
		if src.timer == nil {
			src.timer = time.AfterFunc(src.every, src.expire)
		} else {
			src.timer.Reset(src.every)
		}
	}
}

// expire is the sweep timer's: it forgets the sources that left, and comes
// back while the table stays above expireAbove.
func (s *sources) expire() {
	now := s.stamp()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	if s.armed = len(s.m) > expireAbove; s.armed {
		s.timer.Reset(s.every)
	}
}

// Release gives back the slot of a connection Acquire allowed.
func (t *Table) Release(client netip.AddrPort) {
	key := t.Key(client.Addr())
	t.src.mu.Lock()
	defer t.src.mu.Unlock()
	s, ok := t.src.m[key]
	if !ok || s.conns == 0 {
		return // not acquired: a caller's mistake must not underflow
	}
	s.conns--
	// The clock is read only when it decides something: it is the
	// dearest part of the call on some virtual machines. A source never
	// charged to a rate has next 0, whichever Table charged it.
	if s.conns == 0 && (s.next == 0 || s.next <= t.stamp()) {
		delete(t.src.m, key)
		return
	}
	t.src.m[key] = s
}

// Len is the number of sources tracked now.
func (t *Table) Len() int {
	t.src.mu.Lock()
	defer t.src.mu.Unlock()
	return len(t.src.m)
}

// Conns is the number of connections key holds now, by Acquire's count.
func (t *Table) Conns(key netip.Prefix) int {
	t.src.mu.Lock()
	defer t.src.mu.Unlock()
	return int(t.src.m[key].conns)
}

// Sweep forgets every source that holds no connection and whose bucket is
// full again, now. A table sweeps itself when it fills and, above 1 024
// sources, every 10 s (expireEvery).
func (t *Table) Sweep() {
	now := t.stamp()
	t.src.mu.Lock()
	defer t.src.mu.Unlock()
	t.src.sweepLocked(now)
}

func (t *Table) stamp() int64 { return t.src.stamp() }

func (s *sources) stamp() int64 { return int64(s.now().Sub(s.origin)) }

func idle(s source, now int64) bool { return s.conns == 0 && s.next <= now }

func (s *sources) sweepLocked(now int64) {
	s.lastSweep = now
	for k, v := range s.m {
		if idle(v, now) {
			delete(s.m, k)
		}
	}
	if s.peak > expireAbove && len(s.m) < s.peak/4 {
		m := make(map[netip.Prefix]source, len(s.m))
		for k, v := range s.m {
			m[k] = v
		}
		s.m, s.peak = m, len(m)
	}
}

// makeRoomLocked frees one place in a full table: by a sweep at most once
// per sweepEvery, else by forgetting a source that holds no connection,
// even one still in rate debt. It reports whether a place is free.
func (t *Table) makeRoomLocked(now int64) bool {
	if now-t.src.lastSweep >= int64(sweepEvery) || now < t.src.lastSweep {
		t.src.sweepLocked(now)
		if len(t.src.m) < t.maxSources {
			return true
		}
	}
	for k, s := range t.src.m {
		if s.conns == 0 {
			delete(t.src.m, k)
			return true
		}
	}
	return false
}
