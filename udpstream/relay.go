package udpstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgerelay/relay/limit"
	"github.com/edgerelay/relay/upstream"
	"github.com/rs/zerolog"
)

// ErrClosed is returned by Serve after Close or Shutdown.
var ErrClosed = errors.New("udpstream: relay closed")

// Defaults for the zero values of Config. They are the only copy: config
// applies them to listeners that do not set a value.
const (
	DefaultSessionTimeout = 60 * time.Second
	DefaultMaxSessions    = 4096
	DefaultSocketBuffer   = 4 << 20 // bytes, read and write
)

// Config describes one UDP listener: a port or a port range and, for each
// port, the upstreams its sessions go to.
type Config struct {
	Name string // listener name, the "listener" field of every log line

	// Listen holds one bind address per port, "host:port"; a range arrives
	// already expanded, one entry per port.
	Listen []string
	// Upstream chooses the upstream of each new session from Upstreams and
	// keeps their health; the Relay takes it over (Serve starts it, Close
	// closes it). nil: a Set over Upstreams with passive health only.
	Upstream *upstream.Set

	// Upstreams[i] is the failover list for Listen[i], "host:port" each
	// (host names are resolved once, by Listen). Sessions use the first;
	// when it is reported unreachable (ICMP port unreachable) the port's
	// sessions move to the next, wrapping around.
	Upstreams [][]string

	SessionTimeout time.Duration // idle time after which a session ends; zero: 60s
	// MaxSessions caps the sessions open at once, over all ports and the
	// relay of the same Name this one Replaces while its sessions drain.
	// Zero: 4096.
	MaxSessions int
	// UnconfirmedTimeout is the idle time after which a session the
	// upstream never answered ends (see conntrack.go); at most
	// SessionTimeout. Zero: DefaultUnconfirmedTimeout.
	UnconfirmedTimeout time.Duration
	// MaxSessionsPerSource caps the sessions of one client address (IPv6:
	// one /64), over all ports and the relay of the same Name this one
	// Replaces. Zero: DefaultSessionsPerSource.
	MaxSessionsPerSource int
	// PerSourceRate caps the datagrams per second one client address (IPv6:
	// one /64) sends through, over all ports, with a burst of one second's
	// worth; the rest are dropped. A source's allowance carries over from
	// the relay of the same Name this one Replaces. Zero: no cap.
	PerSourceRate float64
	ReadBuffer    int  // SO_RCVBUF of every socket, bytes; zero: 4 MiB
	WriteBuffer   int  // SO_SNDBUF of every socket, bytes; zero: 4 MiB
	Freebind      bool // bind listen addresses the box does not have yet (IP_FREEBIND)
	// Buffers is where the relay's readers take their receive buffers
	// from: one NewBuffers for every relay of a process keeps their
	// memory under one ceiling (16 MiB). nil: buffers of the relay's own,
	// with the same ceiling for it alone.
	Buffers *Buffers

	// Admit is asked once per new session, with the client's address, on
	// the first datagram from a source that has no session; nil admits all.
	// A refused source's datagrams are dropped and counted, and Admit is
	// asked again on its next datagram (so an ACL reload applies at once).
	Admit func(netip.AddrPort) bool

	// Inherit, when set, holds for each Listen entry a listen socket to take
	// over instead of binding one (nil entries are bound): a predecessor's
	// (Relay.Files), or one handed over by the process being upgraded. The
	// Relay dups what it takes; the caller closes these files.
	Inherit []*os.File
	// Replaces lists relays this one succeeds on a reload. A port whose
	// Listen entry equals one of theirs forwards the datagrams of their
	// open sessions to those sessions (and so to their old upstreams)
	// until the sessions expire; only new clients get sessions here. Their
	// readers stop in TakeOver. The sessions of the one of the same Name
	// count against this one's MaxSessions and MaxSessionsPerSource until
	// they end (held.go). nil: none, and the counts start empty.
	Replaces []*Relay

	// Log receives the access log (one line per ended session) and
	// warnings. The zero Logger logs nothing.
	Log zerolog.Logger
}

func (c *Config) sessionTimeout() time.Duration {
	if c.SessionTimeout > 0 {
		return c.SessionTimeout
	}
	return DefaultSessionTimeout
}

func (c *Config) maxSessions() int {
	if c.MaxSessions > 0 {
		return c.MaxSessions
	}
	return DefaultMaxSessions
}

func (c *Config) readBuffer() int {
	if c.ReadBuffer > 0 {
		return c.ReadBuffer
	}
	return DefaultSocketBuffer
}

func (c *Config) writeBuffer() int {
	if c.WriteBuffer > 0 {
		return c.WriteBuffer
	}
	return DefaultSocketBuffer
}

// log returns the configured logger; zerolog's zero Logger is already
// disabled, so no substitution is needed.
func (c *Config) log() zerolog.Logger { return c.Log }

// Relay forwards the datagrams of one listener. Create it with Listen, run
// it with Serve, stop it with Shutdown or Close.
type Relay struct {
	name    string
	admit   func(netip.AddrPort) bool
	timeout time.Duration
	tick    time.Duration // sweeper period, the resolution of expiry

	unconfirmedTimeout time.Duration    // idle time of a session never answered
	limits             *limit.Table     // sessions per source address, shared on reloads (held.go)
	rates              *limit.Table     // datagrams per source address; nil: no cap
	held               *heldSessions    // sessions open on the relays of the name (held.go)
	unconfirmed        unconfirmedQueue // sessions in opening order, for eviction
	setupWorkers       int              // setupLoop goroutines, one per core up to 4 (setup.go)
	setups             chan *pending    // newcomers waiting for setupLoop (setup.go)
	retries            chan *pending    // the same for sources seen again after a drop; served first
	recent             recentDrops      // sources dropped for a full queue, for the retry lane
	kept               newcomerBudget   // what is kept for newcomers (budget.go)
	maxSessions        int64
	log                zerolog.Logger
	net                network
	bufs               *Buffers      // what net's readers draw on (Listen); nil over a simulated network
	ups                *upstream.Set // chooses each session's upstream; closed by Close
	ports              []*port
	start              time.Time
	stats              Stats

	// clock is a coarse "now" (nanoseconds since start), advanced by the
	// sweeper once per tick. The data path stamps sessions with it: one
	// atomic load per batch instead of a time.Now or a timer per datagram.
	clock atomic.Int64

	draining     atomic.Bool   // Shutdown began: no new sessions
	closing      atomic.Bool   // Close began: readers exit on their next error
	done         chan struct{} // closed by Close
	drained      chan struct{} // closed when draining and no session is left
	drainedOnce  sync.Once
	closeOnce    sync.Once
	takeOverOnce sync.Once
	wg           sync.WaitGroup // port readers, the sweeper, setupLoops, sessions

	mu      sync.Mutex // guards the following
	serving bool
	closed  bool
}

// Listen binds every listen port now (so bind errors surface at start and
// on reload) and resolves the upstreams. It starts no goroutine.
func Listen(cfg Config) (*Relay, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Upstream == nil {
		s, err := upstream.New(upstream.Config{Listener: cfg.Name, Network: "udp", Lists: cfg.Upstreams, Log: cfg.Log})
		if err != nil {
			return nil, fmt.Errorf("udpstream: %w", err)
		}
		cfg.Upstream = s
	}
	if cfg.Buffers == nil {
		cfg.Buffers = NewBuffers()
	}
	r, err := listen(cfg, defaultNetwork(&cfg))
	if err != nil {
		cfg.Upstream.Close()
	}
	return r, err
}

// check refuses a config without listen addresses or with a port that has
// no upstream.
func (c *Config) check() error {
	if len(c.Listen) == 0 {
		return errors.New("udpstream: no listen address")
	}
	if len(c.Upstreams) != len(c.Listen) {
		return fmt.Errorf("udpstream: %d listen addresses but %d upstream lists", len(c.Listen), len(c.Upstreams))
	}
	for i, list := range c.Upstreams {
		if len(list) == 0 {
			return fmt.Errorf("udpstream: no upstream for %s", c.Listen[i])
		}
	}
	return nil
}

// upAlways is the probe of a Set made by listen for a simulated network:
// nothing may leave the simulation, so a down upstream is simply tried
// again after the back-off.
func upAlways(context.Context, netip.AddrPort) error { return nil }

// listen is Listen over any network; the vnet tests pass theirs.
func listen(cfg Config, nw network) (*Relay, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ups := cfg.Upstream
	if ups == nil {
		s, err := upstream.New(upstream.Config{Listener: cfg.Name, Network: "udp", Lists: cfg.Upstreams,
			Probe: upAlways, Log: cfg.Log})
		if err != nil {
			return nil, fmt.Errorf("udpstream: %w", err)
		}
		ups = s
	}
	timeout := cfg.sessionTimeout()
	r := &Relay{
		name:               cfg.Name,
		admit:              cfg.Admit,
		timeout:            timeout,
		unconfirmedTimeout: cfg.unconfirmedTimeout(),
		setupWorkers:       setupWorkers(),
		setups:             make(chan *pending, setupQueueLen),
		retries:            make(chan *pending, retryQueueLen),
		recent:             newRecentDrops(),
		kept:               newNewcomerBudget(len(cfg.Listen)),
		tick:               min(max(cfg.unconfirmedTimeout()/8, 5*time.Millisecond), time.Second),
		maxSessions:        int64(cfg.maxSessions()),
		log:                cfg.log(),
		net:                nw,
		bufs:               cfg.Buffers,
		ups:                ups,
		start:              time.Now(),
		done:               make(chan struct{}),
		drained:            make(chan struct{}),
	}
	r.succeed(&cfg)
	for i, addr := range cfg.Listen {
		var c packetConn
		var err error
		if i < len(cfg.Inherit) && cfg.Inherit[i] != nil {
			c, err = nw.inherit(cfg.Inherit[i])
		} else {
			c, err = nw.listen(addr)
		}
		if err != nil {
			for _, p := range r.ports {
				_ = p.conn.close()
			}
			if cfg.Upstream == nil {
				ups.Close()
			}
			if !errors.As(err, new(*net.OpError)) { // which names the address already
				err = fmt.Errorf("listen %s: %w", addr, err)
			}
			return nil, fmt.Errorf("udpstream: %w", err)
		}
		p := newPort(r, c, i)
		p.spec = addr
		p.from = predecessor(cfg.Replaces, addr)
		p.prev.Store(p.from)
		r.ports = append(r.ports, p)
	}
	r.held.join(r)
	return r, nil
}

// Serve forwards until the relay is closed, then returns ErrClosed.
func (r *Relay) Serve() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	if r.serving {
		r.mu.Unlock()
		return errors.New("udpstream: Serve called twice")
	}
	r.serving = true
	r.wg.Add(len(r.ports) + 1 + r.setupWorkers)
	for _, p := range r.ports {
		go p.readLoop()
	}
	r.takeOver() // a no-op when the owner called TakeOver first
	go r.sweepLoop()
	for range r.setupWorkers {
		go r.setupLoop()
	}
	r.mu.Unlock()
	r.ups.Start()

	<-r.done
	return ErrClosed
}

// Shutdown stops opening sessions, keeps forwarding for the open ones until
// they have all expired or ctx is done, then closes everything. It returns
// ctx's error if sessions had to be cut, and returns only when every
// goroutine has exited.
func (r *Relay) Shutdown(ctx context.Context) error {
	r.draining.Store(true)
	if r.stats.SessionsActive.Load() == 0 {
		r.signalDrained()
	}
	var err error
	select {
	case <-r.drained:
	case <-r.done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	_ = r.Close()
	return err
}

// Close closes every socket now, ending open sessions (reason "shutdown"),
// and waits for the relay's goroutines. It is safe to call more than once.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		r.closing.Store(true)
		close(r.done)
		for _, p := range r.ports {
			_ = p.conn.close()
		}
		for _, p := range r.ports {
			p.closeSessions(endShutdown)
		}
		r.held.leave(r) // its sessions are ending: none is left to evict
	})
	r.wg.Wait()
	r.dropQueued()
	r.ups.Close()
	r.net.releaseBatches() // its readers have handed theirs back
	return nil
}

// Addrs returns the bound listen addresses, in the order of Config.Listen.
func (r *Relay) Addrs() []net.Addr {
	addrs := make([]net.Addr, len(r.ports))
	for i, p := range r.ports {
		addrs[i] = p.conn.localAddr()
	}
	return addrs
}

// Stats returns the relay's live counters.
func (r *Relay) Stats() *Stats { return &r.stats }

// Buffers returns the receive buffers the relay's readers draw on:
// Config.Buffers, or the relay's own when that was nil.
func (r *Relay) Buffers() *Buffers { return r.bufs }

// now reads the coarse clock.
func (r *Relay) now() int64 { return r.clock.Load() }

// sessionGone gives back a session slot and tells a waiting Shutdown when the
// last one is gone.
func (r *Relay) sessionGone() {
	r.held.n.Add(-1) // before SessionsActive: who sees it at 0 sees the places free
	r.activeGone()
}

// activeGone takes a session off SessionsActive, whose place went on to
// another relay or was given back, and tells a waiting Shutdown when the
// last one is gone.
func (r *Relay) activeGone() {
	if r.stats.SessionsActive.Add(-1) == 0 && r.draining.Load() {
		r.signalDrained()
	}
}

func (r *Relay) signalDrained() { r.drainedOnce.Do(func() { close(r.drained) }) }

// sweepLoop advances the coarse clock and ends idle sessions, once per tick.
func (r *Relay) sweepLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.tick)
	defer t.Stop()
	var expired []*session // reused between ticks
	var trimmed int64      // clock of the last batch pool trim
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
		}
		now := int64(time.Since(r.start))
		r.clock.Store(now)
		for _, p := range r.ports {
			// One tick of slack: a datagram that came between the clock's
			// last two updates carries the older stamp, so the change a
			// sweep sees can be up to a tick older than the traffic.
			// With it a session never ends before its timeout.
			expired = p.expire(now, int64(r.timeout+r.tick), int64(r.unconfirmedTimeout+r.tick),
				r.draining.Load(), expired[:0])
			for _, s := range expired {
				s.end(s.idleEnd, nil)
			}
			p.unlinkClosed()
		}
		clear(expired) // drop references to ended sessions
		r.unconfirmed.compact()
		if now-trimmed >= int64(batchTrimPeriod) {
			r.net.trimBatches()
			trimmed = now
		}
	}
}
