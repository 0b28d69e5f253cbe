package acl

import (
	"cmp"
	"crypto/x509"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Set holds the List in force and the guards that enforce it. The daemon
// keeps one Set for its lifetime: Store swaps in the List of a reload, and
// every guard sees it on its next decision (established connections are
// not asked again). A Set with no List stored, or with nil stored, allows
// every client.
//
// Rejections are logged one by one up to LogBurst per LogInterval for each
// guard; beyond that they are only counted, and the count is logged at Warn
// level as "N rejections suppressed" on the guard's first rejection of a
// later interval, or by Flush. There is no background goroutine: the daemon
// calls Flush on a ticker (every 10 s, say) and at shutdown, so a scan that
// has stopped still gets its summary.
//
// Set the exported fields before the first Guard call; a Set must not be
// copied after first use.
type Set struct {
	LogBurst    int              // rejections logged per guard per interval; zero: 10
	LogInterval time.Duration    // zero: one second
	Now         func() time.Time // nil: time.Now

	list atomic.Pointer[List]

	recent recentRing // the last rejections, for the status page

	mu     sync.Mutex // guards the following
	guards map[guardKey]*guard
}

type guardKey struct {
	listener string
	proto    Proto
}

// Store makes l the List in force; nil allows every client.
func (s *Set) Store(l *List) { s.list.Store(l) }

// Load returns the List in force, nil if none.
func (s *Set) Load() *List { return s.list.Load() }

// Guard returns the Admit hook for one listener: it decides with the List in
// force at each call, counts the outcome, and logs rejections (sampled) to
// log with the listener, the client and the deciding line.
//
// Asking again for the same listener and proto returns a hook on the same
// counters (so they stay monotonic across reloads) that logs to the newer
// log. A zero log logs nothing.
func (s *Set) Guard(listener string, proto Proto, log zerolog.Logger) func(netip.AddrPort) bool {
	return s.guard(listener, proto, log).admit
}

// GuardTLS is Guard for a listener that terminates TLS: forward asks it
// within the handshake, once the client's certificate is verified, with
// that certificate (nil: none), and hostssl lines take part (see
// List.DecideTLS). Besides the decision it returns the deciding line
// ("relay_hba.conf:3", "no matching line", or "" when no ACL is loaded)
// for the connection's access line. It counts on
// the same counters as Guard(listener, ProtoTCP, ...), and its rejection
// lines name the certificate (cn).
func (s *Set) GuardTLS(listener string, log zerolog.Logger) func(netip.AddrPort, *x509.Certificate) (bool, string) {
	return s.guard(listener, ProtoTCP, log).admitTLS
}

// Refusals returns the hook that logs clients of one listener refused by a
// check made after the ACL (the per-source limits, FTP's data-port owner
// check), with the check's reason. They share the budget and the "suppressed" summary of the
// listener's ACL rejections, so a flood costs a few lines a second however
// it is turned away. They are counted in Counts.Refused, not Rejected.
func (s *Set) Refusals(listener string, proto Proto, log zerolog.Logger) func(client netip.AddrPort, reason string) {
	return s.guard(listener, proto, log).refuse
}

// guard returns the guard of listener and proto, made on first use, with
// log as its logger from now on.
func (s *Set) guard(listener string, proto Proto, log zerolog.Logger) *guard {
	key := guardKey{listener, proto}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.guards[key]
	if g == nil {
		g = &guard{set: s, key: key}
		if s.guards == nil {
			s.guards = map[guardKey]*guard{}
		}
		s.guards[key] = g
	}
	g.log.Store(&log)
	return g
}

// Keep drops the guards of the listeners and protos for which keep says
// false, once their suppressed rejections are summarised: their counters
// leave Counts, and so the metrics. The daemon calls it when a listener a
// reload removed has drained; otherwise every name a config ever had would
// keep its series for the process's life. Nothing may use a dropped
// guard's hooks any more: asking for the same listener and proto again
// makes a new guard, counting from zero.
func (s *Set) Keep(keep func(listener string, proto Proto) bool) {
	var dropped []*guard
	s.mu.Lock()
	for k, g := range s.guards {
		if !keep(k.listener, k.proto) {
			delete(s.guards, k)
			dropped = append(dropped, g)
		}
	}
	s.mu.Unlock()
	for _, g := range dropped {
		g.flush()
	}
}

// Counts is what one guard has decided since it was first made.
type Counts struct {
	Listener string
	Proto    Proto
	Allowed  uint64
	Rejected uint64
	Refused  uint64 // clients the ACL allowed that a later check refused (Refusals)
	Logged   uint64 // rejections and refusals logged one by one; the rest were summarized
}

// Counts returns every guard's counters, sorted by listener then proto, for
// the metrics endpoint.
func (s *Set) Counts() []Counts {
	s.mu.Lock()
	out := make([]Counts, 0, len(s.guards))
	for k, g := range s.guards {
		out = append(out, Counts{
			Listener: k.listener,
			Proto:    k.proto,
			Allowed:  g.allowed.Load(),
			Rejected: g.rejected.Load(),
			Refused:  g.refused.Load(),
			Logged:   g.logged.Load(),
		})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Counts) int {
		return cmp.Or(cmp.Compare(a.Listener, b.Listener), cmp.Compare(a.Proto, b.Proto))
	})
	return out
}

// Flush logs, for every guard, the rejections suppressed since its last
// summary, if any.
func (s *Set) Flush() {
	s.mu.Lock()
	guards := make([]*guard, 0, len(s.guards))
	for _, g := range s.guards {
		guards = append(guards, g)
	}
	s.mu.Unlock()
	for _, g := range guards {
		g.flush()
	}
}

func (s *Set) burst() int {
	if s.LogBurst > 0 {
		return s.LogBurst
	}
	return 10
}

func (s *Set) interval() time.Duration {
	if s.LogInterval > 0 {
		return s.LogInterval
	}
	return time.Second
}

func (s *Set) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// guard enforces the Set's List for one listener and protocol.
type guard struct {
	set *Set
	key guardKey

	log      atomic.Pointer[zerolog.Logger]
	allowed  atomic.Uint64
	rejected atomic.Uint64
	refused  atomic.Uint64
	logged   atomic.Uint64

	mu          sync.Mutex // guards the following
	windowStart time.Time  // start of the current log interval
	inWindow    int        // rejections logged in the current interval
	suppressed  uint64     // rejections not logged since the last summary
}

// admit is the hot path: one atomic load, one Decide, one atomic add.
func (g *guard) admit(client netip.AddrPort) bool {
	d := g.set.list.Load().Decide(g.key.listener, g.key.proto, client.Addr())
	if d.Allow {
		g.allowed.Add(1)
		return true
	}
	g.rejected.Add(1)
	g.logRejection(client, d, nil)
	return false
}

func (g *guard) admitTLS(client netip.AddrPort, cert *x509.Certificate) (bool, string) {
	var peer *Peer
	if cert != nil {
		peer = &Peer{CN: cert.Subject.CommonName, DNSNames: cert.DNSNames}
	}
	list := g.set.list.Load()
	d := list.DecideTLS(g.key.listener, client.Addr(), peer)
	why := "no matching line"
	switch {
	case d.Rule != nil:
		why = d.Rule.Where()
	case list == nil:
		why = ""
	}
	if d.Allow {
		g.allowed.Add(1)
		return true, why
	}
	g.rejected.Add(1)
	g.logRejection(client, d, peer)
	return false, why
}

// logRejection keeps a rejected client for Recent and writes its line,
// within the budget.
func (g *guard) logRejection(client netip.AddrPort, d Decision, peer *Peer) {
	g.set.recent.add(Rejection{Time: g.set.now(), Listener: g.key.listener, Proto: g.key.proto, Client: client, Rule: ruleText(d)})
	if log := g.budget(); log != nil {
		ev := log.Info().
			Str("listener", g.key.listener).
			Stringer("proto", g.key.proto).
			Stringer("client", client)
		if peer != nil {
			ev = ev.Str("cn", peer.CN)
		}
		if d.Rule != nil {
			ev = ev.Str("rule", d.Rule.Where()).Str("line", d.Rule.String())
		} else {
			ev = ev.Str("rule", "no matching line")
		}
		ev.Msg("acl rejected client")
	}
}

// refuse logs a client a later check refused, within the same budget.
func (g *guard) refuse(client netip.AddrPort, reason string) {
	g.refused.Add(1)
	if log := g.budget(); log != nil {
		log.Info().
			Str("listener", g.key.listener).
			Stringer("proto", g.key.proto).
			Stringer("client", client).
			Str("reason", reason).
			Msg("client refused")
	}
}

// budget takes one line from the interval's budget: it returns the logger
// to write it to, or nil when the budget is spent and the line is only
// counted. The first line of a new interval also logs the previous
// interval's summary.
func (g *guard) budget() *zerolog.Logger {
	now := g.set.now()
	g.mu.Lock()
	var summary uint64
	if g.windowStart.IsZero() || now.Sub(g.windowStart) >= g.set.interval() || now.Before(g.windowStart) {
		summary, g.suppressed = g.suppressed, 0
		g.windowStart, g.inWindow = now, 0
	}
	logIt := g.inWindow < g.set.burst()
	if logIt {
		g.inWindow++
	} else {
		g.suppressed++
	}
	g.mu.Unlock()

	log := g.log.Load()
	if summary > 0 {
		g.summarize(log, summary)
	}
	if !logIt {
		return nil
	}
	g.logged.Add(1)
	return log
}

func (g *guard) flush() {
	g.mu.Lock()
	n := g.suppressed
	g.suppressed = 0
	g.mu.Unlock()
	if n > 0 {
		g.summarize(g.log.Load(), n)
	}
}

func (g *guard) summarize(log *zerolog.Logger, n uint64) {
	log.Warn().
		Str("listener", g.key.listener).
		Stringer("proto", g.key.proto).
		Uint64("suppressed", n).
		Uint64("rejected_total", g.rejected.Load()).
		Uint64("refused_total", g.refused.Load()).
		Msgf("%d rejections suppressed", n)
}
