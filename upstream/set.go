// Package upstream chooses the address a data plane dials and remembers
// which upstreams answer. Its main type is Set: the upstreams of one
// listener, one failover list per listen port, each address up or down.
//
// A data plane (forward for tcp and raw, ftppassive for the FTP control
// connection, udpstream for sessions) walks a port's list with a Cursor:
// Next gives the first address that is up, in the config's order, and the
// data plane reports how the dial went (Worked, Failed). A failed dial marks
// the address down: later connections skip it without paying the connect
// timeout, and the Set re-tries it in the background (after 1 s, doubling,
// at most every 30 s) until a probe answers. Optional active checks
// (Health.Interval) probe every address that is up, so an upstream is known
// down before a client needs it. Every change of state is one log line, and
// Snapshot feeds the relay_upstream_* metrics.
//
// Host names are resolved through a Resolver: a small DNS client whose cache
// honours the answer's TTL (bounded to 5 s .. 5 min) and keeps the last good
// answer when a name stops resolving. A name's addresses are those of its
// latest answer: an address it no longer has is forgotten, with its health
// and its re-try, so a name whose address changes over weeks keeps one.
//
// Where the job ends: upstream does not move bytes, does not dial for the
// data plane (it only probes) and holds no per-connection state.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// ErrAllDown is what a Cursor's Err wraps when no upstream of the port was
// up to try: the client is closed at once instead of waiting for a dial.
var ErrAllDown = errors.New("upstream: every upstream is down")

// DefaultUDPTimeout bounds a udp listener's probe when Health.Timeout is
// zero (udp has no connect_timeout); relay check prints it.
const DefaultUDPTimeout = time.Second

// Defaults for the zero values of Config.
const (
	defaultTCPTimeout = 5 * time.Second
	retryFirst        = time.Second      // first background re-try of a down upstream
	retryMax          = 30 * time.Second // the back-off's cap
)

// Health configures active checks.
type Health struct {
	// Interval between probes of every upstream that is up. Zero: no
	// active checks; an upstream is marked down only by a failed dial.
	Interval time.Duration
	// Timeout bounds one probe. Zero: Config.Timeout.
	Timeout time.Duration

	// For udp: Send is the payload of the probe datagram (nil: empty). A
	// UDP probe alone sees only ICMP errors, so a black hole (a host that
	// drops everything, a dead box whose router sends no unreachable)
	// counts as up. With ExpectReply the upstream must answer, within
	// Timeout, with a datagram that begins with Expect (empty: any
	// answer); silence then counts as down. For an upstream that answers
	// some request (a status query, an echo). tcp ignores all three.
	Send        []byte
	Expect      []byte
	ExpectReply bool
}

// Config describes the upstreams of one listener.
type Config struct {
	// Listener is the listener's name: the "listener" field of log lines.
	Listener string
	// Network is "tcp" or "udp": how a probe reaches an upstream (a TCP
	// connect, or a UDP datagram that draws ICMP port unreachable from a
	// closed port). Empty: "tcp".
	Network string
	// Lists[i] is the failover list of listen port i, "host:port" each,
	// tried in order. A host may be an IP address or a DNS name.
	Lists [][]string
	// Timeout bounds a background re-try's probe. Zero: 5 s for tcp (the
	// default connect timeout), 1 s for udp (the wait for an ICMP error).
	Timeout time.Duration
	// Health turns on active checks; the zero value leaves them off.
	Health Health
	// Dial makes a TCP probe's connection. nil: a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Handshake, when set, is run by a tcp probe on the connection it
	// made, with the upstream as configured (Target.Spec), and closes it;
	// its error is the probe's. A listener that originates TLS sets it to
	// the TLS handshake (forward.ProbeTLS): a bare connect would bring an
	// upstream whose certificate is wrong back up, to fail the next
	// client's handshake again. nil: the connect alone is the probe.
	Handshake func(ctx context.Context, c net.Conn, spec string) error
	// Probe replaces the probe (a TCP connect, a UDP datagram) when set:
	// nil error means addr answers. Tests over a simulated network use
	// it so that no probe leaves the simulation.
	Probe func(ctx context.Context, addr netip.AddrPort) error
	// Resolver resolves host names; several Sets may share one. nil: if a
	// list holds a name, New makes one over /etc/resolv.conf and Close
	// closes it.
	Resolver *Resolver
	// Log receives the state changes. The zero Logger logs nothing.
	Log zerolog.Logger
	// Replaces is the Set of the listener this one succeeds on a reload
	// (same Network). An address it knows to be down starts down here,
	// in the same outage (no second "upstream down" line; re-tried from
	// Start), so the first clients after a reload are not sent to it
	// again, each to wait out a connect timeout. A reload that changed
	// how they are dialled ends those outages with Reset. nil: every
	// address starts up.
	Replaces *Set
}

// Set is the upstreams of one listener and their health. New makes it,
// Start runs its active checks, Close stops every goroutine it runs.
type Set struct {
	cfg     Config
	log     zerolog.Logger  // carries the listener field
	lists   [][]*entry      // per listen port, in config order
	entries []*entry        // every distinct entry, in config order (metrics)
	outage  []atomic.Bool   // per listen port: "every upstream down" was logged
	done    chan struct{}   // closed by Close
	ctx     context.Context // cancelled by Close: ends the probes
	cancel  context.CancelFunc
	wg      sync.WaitGroup // re-try loops and the check loop

	quiet   chan struct{} // closed by Retire: the active checks end
	retired atomic.Bool   // Retire was called: state changes are not logged

	resolver *Resolver // cfg.Resolver, or one New made (ownRes); nil without names
	ownRes   bool

	mu      sync.Mutex // guards the following
	targets map[netip.AddrPort]*Target
	started bool
	closed  bool
	// inherited is each address Config.Replaces knew to be down, and its
	// outage: its target starts down (inheritOutageLocked).
	inherited map[netip.AddrPort]outage
	pending   []*Target // inherited down before Start, which re-tries them
}

// entry is one upstream as configured: an address, or a name and a port.
type entry struct {
	spec string // "host:port" as written: the upstream label of metrics
	name string // the host when it is a DNS name; empty for an IP literal
	port uint16
	// fixed holds the one target of an IP literal; nil for a name.
	fixed []*Target

	// The targets of a name's latest answer, swapped whole when the
	// answer changes, so Cursors read it without a lock.
	named atomic.Pointer[resolved]
	// failovers counts connections that went past this entry because it
	// was down or its dial failed.
	failovers atomic.Uint64
}

// New checks cfg and builds the Set. It starts no goroutine.
func New(cfg Config) (*Set, error) {
	if cfg.Network == "" {
		cfg.Network = "tcp"
	}
	if cfg.Network != "tcp" && cfg.Network != "udp" {
		return nil, fmt.Errorf("upstream: network %q (want tcp or udp)", cfg.Network)
	}
	s := &Set{
		cfg:      cfg,
		log:      cfg.Log.With().Str("listener", cfg.Listener).Logger(),
		lists:    make([][]*entry, 0, len(cfg.Lists)),
		outage:   make([]atomic.Bool, len(cfg.Lists)),
		done:     make(chan struct{}),
		quiet:    make(chan struct{}),
		targets:  make(map[netip.AddrPort]*Target),
		resolver: cfg.Resolver,
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if old := cfg.Replaces; old != nil && old.cfg.Network == cfg.Network {
		s.inherited = old.down()
	}
	// Kept, every Set a reload ever replaced would stay reachable.
	s.cfg.Replaces = nil
	bySpec := make(map[string]*entry)
	for i, list := range cfg.Lists {
		if len(list) == 0 {
			return nil, fmt.Errorf("upstream: listen port %d has no upstream", i)
		}
		s.lists = append(s.lists, make([]*entry, 0, len(list)))
		for _, spec := range list {
			e, err := s.entry(spec, bySpec)
			if err != nil {
				return nil, err
			}
			s.lists[i] = append(s.lists[i], e)
		}
	}
	s.inheritOutages(cfg.Replaces)
	return s, nil
}

// inheritOutages takes over the "every upstream down" state of each port
// whose list is the same in old, so that an outage a reload did not end is
// not logged again.
func (s *Set) inheritOutages(old *Set) {
	if old == nil || old.cfg.Network != s.cfg.Network {
		return
	}
	for i, list := range s.lists {
		if i < len(old.lists) && slices.EqualFunc(list, old.lists[i], func(a, b *entry) bool { return a.spec == b.spec }) {
			s.outage[i].Store(old.outage[i].Load())
		}
	}
}

// outage is what a successor takes over of an address that is down.
type outage struct {
	since   time.Time
	reached bool // Target.reached
}

// down returns the outage of each address of s that is down now.
func (s *Set) down() map[netip.AddrPort]outage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[netip.AddrPort]outage)
	for addr, t := range s.targets {
		if !t.up.Load() {
			out[addr] = outage{t.downSince, t.reached}
		}
	}
	return out
}

// entry returns the entry of spec, made once per distinct spec so that its
// state and counters are shared by every port that lists it.
func (s *Set) entry(spec string, bySpec map[string]*entry) (*entry, error) {
	if e, ok := bySpec[spec]; ok {
		return e, nil
	}
	host, portStr, err := net.SplitHostPort(spec)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", spec, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("upstream %q: bad port", spec)
	}
	e := &entry{spec: spec, port: uint16(port)}
	if ip, err := netip.ParseAddr(host); err == nil {
		e.fixed = []*Target{s.targetLocked(netip.AddrPortFrom(ip.Unmap(), e.port), e)}
	} else {
		e.name = host
		if s.resolver == nil {
			s.resolver, s.ownRes = NewResolver(ResolverConfig{Log: s.cfg.Log}), true
		}
	}
	bySpec[spec] = e
	s.entries = append(s.entries, e)
	return e, nil
}

// Start runs the active checks, if Health.Interval is set: the first
// round at once, so a dead upstream is known before the first client
// needs it; and the re-tries of the addresses Config.Replaces knew to be
// down. Without either, Start does nothing; passive health needs no start.
func (s *Set) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.closed {
		return
	}
	s.started = true
	for _, t := range s.pending {
		s.wg.Add(1)
		go t.retryLoop(t.downs)
	}
	s.pending = nil
	if s.cfg.Health.Interval > 0 {
		s.wg.Add(1)
		go s.checkLoop()
	}
}

// Retire quiets a Set whose listener has stopped accepting because a
// successor took its sockets over (a reload, a binary upgrade): the
// successor's Set checks the same upstreams and logs their outages, so
// this one's active checks end and its state changes are no longer
// logged (two Sets would probe twice and log each outage twice for as long
// as the old listener drains, which may be days). The re-tries of what it
// knows down go on, quietly, for the dials its listener still makes. It is
// idempotent; Close still has to be called.
func (s *Set) Retire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.retired.Swap(true) {
		close(s.quiet)
	}
}

// Close stops the checks and re-tries and waits for them. It is
// idempotent. A Cursor used after Close still works; no upstream goes back
// up any more.
func (s *Set) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.cancel()
	s.mu.Unlock()
	s.wg.Wait()
	if s.ownRes {
		s.resolver.Close()
	}
	return nil
}

// Names returns the host names the Set's upstreams are given by (none for
// IP addresses), each once.
func (s *Set) Names() []string {
	var out []string
	for _, e := range s.entries {
		if e.name != "" && !slices.Contains(out, e.name) {
			out = append(out, e.name)
		}
	}
	return out
}

// Status is the health of one configured upstream, for metrics.
type Status struct {
	Upstream string // "host:port" as configured
	// Up: at least one address of it is up. A name that has never
	// resolved has no address and is down.
	Up bool
	// Failovers counts connections (udp: sessions) that went past this
	// upstream to the next in their list, or found no other, because it
	// was down or its dial failed.
	Failovers uint64
}

// Snapshot returns the status of every configured upstream, in config
// order, each once however many listen ports list it.
func (s *Set) Snapshot() []Status {
	out := make([]Status, 0, len(s.entries))
	for _, e := range s.entries {
		st := Status{Upstream: e.spec, Failovers: e.failovers.Load()}
		for _, t := range e.known() {
			st.Up = st.Up || t.up.Load()
		}
		out = append(out, st)
	}
	return out
}

// targetLocked returns the target of addr, made on first use. The caller
// holds s.mu, or is New (nobody else sees s yet).
func (s *Set) targetLocked(addr netip.AddrPort, e *entry) *Target {
	if t, ok := s.targets[addr]; ok {
		return t
	}
	t := &Target{s: s, entry: e, addr: addr, str: addr.String()}
	t.up.Store(true) // an upstream is trusted until a dial or probe fails
	s.targets[addr] = t
	if o, ok := s.inherited[addr]; ok {
		s.inheritOutageLocked(t, o)
	}
	return t
}

// inheritOutageLocked starts t down, in the outage o of the replaced Set's
// address, and has it re-tried: from Start, or now if the Set has started
// (a name resolved later).
func (s *Set) inheritOutageLocked(t *Target, o outage) {
	t.up.Store(false)
	t.downSince, t.downs, t.reached = o.since, 1, o.reached
	switch {
	case !s.started:
		s.pending = append(s.pending, t)
	case !s.closed:
		s.wg.Add(1)
		go t.retryLoop(t.downs)
	}
}

// current returns the targets of e now: its address, or the addresses of
// its name's latest answer (nil when the name never resolved). A name's
// first lookup waits for the DNS answer; later ones read the cache, which
// refreshes itself in the background.
func (s *Set) current(e *entry) []*Target {
	if e.name == "" {
		return e.fixed
	}
	ans, _ := s.resolver.Lookup(e.name)
	if cur := e.named.Load(); cur != nil && (ans == nil || cur.ans == ans) {
		return cur.targets
	}
	if ans == nil {
		return nil
	}
	r := &resolved{ans: ans, targets: make([]*Target, 0, len(ans.Addrs))}
	s.mu.Lock()
	for _, a := range ans.Addrs {
		r.targets = append(r.targets, s.targetLocked(netip.AddrPortFrom(a, e.port), e))
	}
	if old := e.named.Swap(r); old != nil {
		s.forgetLocked(old.targets)
	}
	s.mu.Unlock()
	return r.targets
}

// forgetLocked drops those of a name's previous targets that no upstream
// has now. A name whose address changes (a dynamic address, a pool that
// rotates) would otherwise leave a Target for every address it ever had,
// for as long as the listener runs, and a down one's re-try would go on
// probing an address nobody names any more (TestNameForgetsOldAddresses).
// A connection that holds one still reports to it; should the address
// come back, it gets a new Target, trusted until a dial fails.
func (s *Set) forgetLocked(old []*Target) {
	for _, t := range old {
		if s.targets[t.addr] != t || s.listedLocked(t) {
			continue
		}
		delete(s.targets, t.addr)
		t.gone = true // its re-try loop ends at its next wake
	}
}

// listedLocked reports whether an upstream has t now.
func (s *Set) listedLocked(t *Target) bool {
	for _, e := range s.entries {
		if slices.Contains(e.fixed, t) {
			return true
		}
		if r := e.named.Load(); r != nil && slices.Contains(r.targets, t) {
			return true
		}
	}
	return false
}

// known returns e's targets as last seen, without asking DNS: a scrape
// must not wait for a name's first lookup.
func (e *entry) known() []*Target {
	if e.name == "" {
		return e.fixed
	}
	if r := e.named.Load(); r != nil {
		return r.targets
	}
	return nil
}

// resolved is a name's answer and the targets made from it.
type resolved struct {
	ans     *Answer
	targets []*Target
}

func (s *Set) timeout() time.Duration {
	switch {
	case s.cfg.Timeout > 0:
		return s.cfg.Timeout
	case s.cfg.Network == "udp":
		return DefaultUDPTimeout
	}
	return defaultTCPTimeout
}

func (s *Set) probeTimeout() time.Duration {
	if s.cfg.Health.Timeout > 0 {
		return s.cfg.Health.Timeout
	}
	return s.timeout()
}

// retryCap is the longest wait between re-tries of a down upstream: 30 s,
// or the check interval when active checks run more often.
func (s *Set) retryCap() time.Duration {
	if iv := s.cfg.Health.Interval; iv > 0 && iv < retryMax {
		return max(iv, retryFirst)
	}
	return retryMax
}
