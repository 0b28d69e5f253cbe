package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgerelay/relay/limit"
	"github.com/edgerelay/relay/proxyhdr"
	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/internal/listennet"
	"github.com/edgerelay/relay/internal/sockfile"
	"github.com/edgerelay/relay/upstream"
)

// Accept back-off: after a failed accept (EMFILE, ENFILE, ENOBUFS...) the
// loop sleeps, doubling from minAcceptBackoff to maxAcceptBackoff, so an
// fd shortage costs a few wake-ups a second instead of a spinning core.
const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

// Listener accepts TCP connections on one socket per configured port and
// forwards each to its upstream (or hands it to Config.Handler).
type Listener struct {
	cfg       Config
	log       zerolog.Logger // carries the listener field
	sampled   zerolog.Logger // log, at most a burst per second: refusals
	lns       []*net.TCPListener
	addrs     []net.Addr
	listens   []string // addrs as text, for log lines without a String per connection
	pool      *Pool
	ownPool   bool // pool was made here and is closed with the listener
	dialer    func(ctx context.Context, network, addr string) (net.Conn, error)
	netDialer *net.Dialer   // the default dialer, nil when Config.Dial is set
	raw       *rawState     // nil unless Config.Raw is set
	limits    *limit.Table  // nil unless Config.PerSource limits something
	held      *atomic.Int64 // open connections, with the retired listeners of the name (held.go)
	headers   sync.Pool     // of *[proxyhdr.MaxAppend]byte, for Config.ProxyProtocol
	ups       *upstream.Set // nil with a Handler that brought no Set
	stats     Stats
	ctx       context.Context // parent of every connection's work
	cancel    context.CancelFunc
	done      chan struct{} // closed when accepting stops; ends back-off sleeps
	started   chan struct{} // closed once Serve runs its accept loops, or accepting stopped
	startOnce sync.Once
	accepting sync.WaitGroup
	conns     sync.WaitGroup
	workers   sync.WaitGroup // connWorker goroutines
	handoff   chan accepted  // unbuffered: to a connWorker waiting for work
	idleWork  atomic.Int32   // connWorkers waiting on handoff
	parker    *parker        // the pool's, holds idle tcp and raw forwards; nil: they keep their goroutines
	parkAfter time.Duration  // defaultParkAfter; tests shorten it before Serve
	// lateKeepAlive: the dialer sets no keepalive; the pipe sets it on
	// the upstream of a connection that lives past parkAfter.
	lateKeepAlive bool
	live          livePairs // running plain forwards, stopped when ctx ends
	// front, when set, accepts and serves the young connections instead
	// of the accept loops and connWorkers (front_linux.go); nil for
	// listeners it does not serve (frontEligible).
	front *front
	// frontHold is the Pool's front, held from Listen until Close or
	// Shutdown has ended every connection (releaseFront); nil: none held.
	frontHold *front
	// frontFDs are duplicates of the listen sockets, made by Listen for
	// the front (so that Serve opens no socket), until Serve hands them
	// over or the listener closes them; nil without a front.
	frontFDs []int
	useFront bool // set by Listen: Serve hands the sockets to the front

	mu      sync.Mutex // guards the following
	closed  bool
	serving bool
	fgroup  *frontGroup // the listener's part of front, once Serve registered it
}

// Listen checks cfg and binds every listen socket now, so that bind errors
// surface at start and on reload. It starts no goroutine; call Serve.
func Listen(cfg Config) (*Listener, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	l := &Listener{
		cfg:     cfg,
		log:     cfg.Log.With().Str("listener", cfg.Name).Logger(),
		pool:    cfg.Pool,
		done:    make(chan struct{}),
		handoff: make(chan accepted),
		started: make(chan struct{}),
	}
	if l.pool == nil {
		l.pool, l.ownPool = NewPool(0), true
	}
	l.sampled = l.log.Sample(&zerolog.BurstSampler{Burst: 5, Period: time.Second})
	l.dialer = cfg.Dial
	if l.dialer == nil {
		l.netDialer = &net.Dialer{KeepAliveConfig: upstreamKeepAlive()}
		l.dialer = l.netDialer.DialContext
	}
	if cfg.Raw != nil {
		l.raw = newRawState(cfg.Raw, len(cfg.Listen))
		l.raw.shareTurns(&cfg)
	}
	l.succeed(&cfg)
	// Kept, the listeners replaced would stay reachable for this one's
	// life, and through each successor, every one a reload ever retired.
	l.cfg.Replaces, l.cfg.PerSource.Replaces = nil, nil
	if cfg.Handler == nil {
		// Without epoll, idle forwards keep their goroutines: slower to
		// nothing, only bigger.
		l.parker = l.pool.parker()
		l.parkAfter = defaultParkAfter
	}
	if l.parker != nil && l.netDialer != nil && cfg.Raw == nil {
		// Keepalive on the upstream only once a connection outlives
		// parkAfter (pair.lateKeepAlive): three setsockopt calls a short
		// connection does not need.
		l.netDialer.KeepAlive, l.netDialer.KeepAliveConfig = -1, net.KeepAliveConfig{}
		l.lateKeepAlive = true
	}
	if cfg.PerSource.MaxConns > 0 || cfg.PerSource.Rate > 0 {
		l.limits = limit.New(cfg.PerSource)
	}
	l.headers.New = func() any { return new([proxyhdr.MaxAppend]byte) }
	if err := l.upstreams(); err != nil {
		return nil, err
	}
	// The ListenConfig's KeepAlive -1 stops Go from setting keepalive on
	// every accepted socket; listenControl sets it once on the listen
	// socket, and accepted sockets inherit it.
	lc := net.ListenConfig{KeepAlive: -1, Control: listenControl(cfg.Freebind)}
	// Go listens with Multipath TCP by default on Linux; a forwarder whose
	// upstream side is plain TCP gains nothing from it and pays its set-up
	// per socket, so the listener is plain TCP.
	lc.SetMultipathTCP(false)
	for i, addr := range cfg.Listen {
		var ln net.Listener
		var err error
		if i < len(cfg.Inherit) && cfg.Inherit[i] != nil {
			ln, err = inherit(cfg.Inherit[i])
		} else {
			ln, err = lc.Listen(context.Background(), listennet.TCP(addr), addr)
		}
		if err != nil {
			for _, prev := range l.lns {
				prev.Close()
			}
			l.closeUpstreams()
			if !errors.As(err, new(*net.OpError)) { // which names the address already
				err = fmt.Errorf("listen %s: %w", addr, err)
			}
			return nil, fmt.Errorf("forward: %w", err)
		}
		l.lns = append(l.lns, ln.(*net.TCPListener))
		l.addrs = append(l.addrs, ln.Addr())
		l.listens = append(l.listens, ln.Addr().String())
	}
	if l.parker != nil && frontEligible(&cfg) {
		// The front is made here, not in Serve: Serve then takes no
		// descriptor of its own, and a failure is told before serving.
		if f, err := l.pool.holdFront(); err != nil {
			l.log.Warn().Err(err).Msg("front unavailable, accepting through the engine")
		} else if l.frontFDs = frontSockets(l.lns, l.log); l.frontFDs != nil {
			l.frontHold, l.useFront = f, true
		} else {
			l.pool.releaseFront(f)
		}
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	context.AfterFunc(l.ctx, l.live.stopAll)
	return l, nil
}

// inherit takes over a listen socket handed on by a Listener being replaced.
func inherit(f *os.File) (net.Listener, error) {
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("inherit socket: %w", err)
	}
	if _, ok := ln.(*net.TCPListener); !ok {
		ln.Close()
		return nil, errors.New("inherit socket: not a TCP listener")
	}
	return ln, nil
}

// Files returns a duplicate of each listen socket, in Listen order, for a
// replacement Listener's Config.Inherit. The caller closes them.
func (l *Listener) Files() ([]*os.File, error) {
	files := make([]*os.File, 0, len(l.lns))
	for _, ln := range l.lns {
		f, err := sockfile.Dup(ln, ln.Addr().String()) // not ln.File: see sockfile
		if err != nil {
			for _, prev := range files {
				prev.Close()
			}
			return nil, fmt.Errorf("forward: dup listen socket %s: %w", ln.Addr(), err)
		}
		files = append(files, f)
	}
	return files, nil
}

func (c *Config) check() error {
	if len(c.Listen) == 0 {
		return errors.New("forward: no listen address")
	}
	if c.Handler != nil && (c.TLS != nil || c.UpstreamTLS != nil) {
		return errors.New("forward: TLS is not available with a Handler")
	}
	if c.Handler != nil && len(c.Upstreams) == 0 {
		return nil
	}
	if len(c.Upstreams) != len(c.Listen) {
		return fmt.Errorf("forward: %d listen addresses but %d upstream lists", len(c.Listen), len(c.Upstreams))
	}
	for i, ups := range c.Upstreams {
		if len(ups) == 0 && c.Handler == nil {
			return fmt.Errorf("forward: no upstream for %s", c.Listen[i])
		}
	}
	return nil
}

// Serve accepts on every socket until Close or Shutdown, then returns
// ErrClosed. Accept errors never end it: they are logged and backed off.
func (l *Listener) Serve() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	if l.serving {
		l.mu.Unlock()
		return errors.New("forward: Serve called twice")
	}
	l.serving = true
	l.accepting.Add(len(l.lns))
	l.mu.Unlock()
	if l.ups != nil {
		l.ups.Start()
	}
	if l.limits != nil {
		// Only now is this listener's rate in force: a reload that built
		// it and then failed must leave the predecessor's as it was.
		l.limits.TakeOver()
	}
	if l.useFront && l.serveFront() {
		l.markStarted()
		l.accepting.Wait()
		return ErrClosed
	}

	for i := 1; i < len(l.lns); i++ {
		go l.acceptLoop(i)
	}
	l.markStarted()
	l.acceptLoop(0)
	l.accepting.Wait()
	return ErrClosed
}

// acceptLoop accepts on socket index until the socket is closed.
func (l *Listener) acceptLoop(index int) {
	defer l.accepting.Done()
	ln := l.lns[index]
	var backoff time.Duration
	defer func() {
		if backoff > 0 {
			l.stats.AcceptBackingOff.Add(-1)
		}
	}()
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.stopping() {
				return
			}
			l.stats.AcceptErrors.Add(1)
			if backoff == 0 {
				l.stats.AcceptBackingOff.Add(1)
				l.log.Warn().Err(err).Str("listen", l.listens[index]).
					Msg("accept failed, backing off")
			}
			backoff = min(max(2*backoff, minAcceptBackoff), maxAcceptBackoff)
			if !l.sleep(backoff) {
				return
			}
			continue
		}
		if backoff > 0 {
			l.stats.AcceptBackingOff.Add(-1)
			backoff = 0
		}
		l.admit(c, index)
	}
}

// sleep waits d or until accepting stops; it reports whether to go on.
func (l *Listener) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.done:
		return false
	}
}

func (l *Listener) stopping() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// admit applies the ACL, the per-source limits and max_conns to a new
// connection, then hands it to a connWorker. Clients turned away are closed
// here, before any dial. A connection from a trusted front takes only a
// max_conns slot here: its worker reads its PROXY header first and checks
// the client the header names (admitFromFront), since reading may wait.
func (l *Listener) admit(c *net.TCPConn, index int) {
	client := clientAddr(c)
	front := len(l.cfg.AcceptProxy) > 0 && l.trustedFront(client.Addr())
	if !front && !l.check(c, client) {
		return
	}
	// After the ACL, as on every path: a source it rejects is told and
	// counted as rejected by it, not as sending a bad header.
	if !front && len(l.cfg.AcceptProxy) > 0 && untrustedHeader(c) {
		l.release(client)
		l.stats.RejectedProxyHeader.Add(1)
		c.Close()
		l.logRefusal(client, "proxy_header: sent by a source not in accept_proxy_protocol")
		return
	}
	if !l.takeSlot(client, index, front) {
		c.Close()
		return
	}
	if !front && l.cfg.TLS == nil {
		l.stats.Accepted.Add(1) // a TLS client counts once its handshake is done
	}
	l.conns.Add(1)
	a := accepted{c: c, client: client, index: index, front: front}
	select {
	case l.handoff <- a:
	default:
		l.workers.Add(1)
		go l.connWorker(a)
	}
}

// frontEligible reports whether the front may serve cfg's connections:
// plain tcp forwards dialled by the listener itself to IP addresses. TLS,
// PROXY headers, raw mode, Handlers, test dialers and upstreams given by
// name keep the engine's path.
func frontEligible(cfg *Config) bool {
	return cfg.Handler == nil && cfg.Raw == nil && cfg.TLS == nil && cfg.UpstreamTLS == nil &&
		len(cfg.AcceptProxy) == 0 && cfg.ProxyProtocol == 0 && cfg.Dial == nil && !namedUpstream(cfg.Upstreams)
}

// namedUpstream reports whether a list holds a host name. A name's first
// dial (and every dial while it has never resolved, each MinTTL) waits for
// DNS; in the front that wait would stop the one loop that serves every
// plain tcp connection of the Pool, for up to the query timeout per
// server, where a connWorker waits alone.
func namedUpstream(lists [][]string) bool {
	for _, list := range lists {
		for _, spec := range list {
			if _, err := netip.ParseAddrPort(spec); err != nil {
				return true
			}
		}
	}
	return false
}

// check asks the ACL and the per-source limits about client; on false c
// was closed, counted and logged.
func (l *Listener) check(c *net.TCPConn, client netip.AddrPort) bool {
	if !l.allowed(client) {
		c.Close()
		return false
	}
	return true
}

// allowed asks the ACL and the per-source limits about client; on false
// the refusal is counted and logged, and the caller closes the client.
func (l *Listener) allowed(client netip.AddrPort) bool {
	// A TLS listener with AdmitTLS asks it within the handshake (terminate).
	if l.cfg.Admit != nil && l.cfg.AdmitTLS == nil && !l.cfg.Admit(client) {
		l.stats.Rejected.Add(1)
		return false
	}
	if l.limits != nil {
		if err := l.limits.Acquire(client); err != nil {
			l.stats.RejectedPerSource.Add(1)
			l.logPerSource(client, err)
			return false
		}
	}
	return true
}

// takeSlot counts a connection in Active unless max_conns are open here
// and on the retired listeners of the name (held); on false it was counted
// as refused and logged, its per-source place given back (unless it came
// from a trusted front, which took none yet), and the caller closes it.
func (l *Listener) takeSlot(client netip.AddrPort, index int, front bool) bool {
	n := l.held.Add(1)
	if l.cfg.MaxConns <= 0 || n <= int64(l.cfg.MaxConns) {
		l.stats.Active.Add(1)
		return true
	}
	l.held.Add(-1)
	l.stats.Refused.Add(1)
	if !front {
		l.release(client)
	}
	l.sampled.Warn().Str("listen", l.listens[index]).Str("client", client.String()).Str("end", EndRefused).
		Int("max_conns", l.cfg.MaxConns).Msg("connection refused: max_conns reached")
	return false
}

// admitFront is admit for a connection the front accepted: true means
// it was counted as accepted and the front forwards it.
func (l *Listener) admitFront(client netip.AddrPort, index int) bool {
	if !l.allowed(client) || !l.takeSlot(client, index, false) {
		return false
	}
	l.stats.Accepted.Add(1)
	l.conns.Add(1)
	return true
}

// logPerSource logs a client over its source's limit.
func (l *Listener) logPerSource(client netip.AddrPort, err error) {
	l.logRefusal(client, "per_source: "+strings.TrimPrefix(err.Error(), "limit: "))
}

// logRefusal logs a client turned away after the ACL, through
// Config.Refused when set (the ACL's rate-limited log), else the
// listener's sampled log.
func (l *Listener) logRefusal(client netip.AddrPort, reason string) {
	if l.cfg.Refused != nil {
		l.cfg.Refused(client, reason)
		return
	}
	l.sampled.Info().Str("client", client.String()).Str("reason", reason).Msg("client refused")
}

// release gives back a connection's place in the per-source limits.
func (l *Listener) release(client netip.AddrPort) {
	if l.limits != nil {
		l.limits.Release(client)
	}
}

// maxIdleWorkers bounds the connWorkers kept waiting for the next
// connection per listener.
const maxIdleWorkers = 16

// accepted is an admitted connection on its way to a connWorker.
type accepted struct {
	c      *net.TCPConn
	client netip.AddrPort // from the PROXY header once a front's was read
	local  netip.AddrPort // the address the client connected to, if known (PROXY header)
	index  int
	front  bool // from a trusted front: its header, ACL and limits are still to check
}

// connWorker serves admitted connections one after the other, up to the
// point where their pipe runs on its own (plain forward) or to their end
// (Handler, raw), then waits for the next one, unless maxIdleWorkers
// already wait or accepting stops.
//
// Why not a goroutine per connection: the upstream dial is deep and grows
// a fresh goroutine's stack two or three times (8% of the relay's CPU in
// BenchmarkConnRate went to copying stacks); a reused worker has grown
// already. Measured: 86.7 -> 82.0 CPU us per connection, +6% conn/s.
// Up to maxIdleWorkers grown stacks (8-16 KiB each) stay per listener.
func (l *Listener) connWorker(a accepted) {
	defer l.workers.Done()
	for {
		l.serveConn(a)
		if l.idleWork.Add(1) > maxIdleWorkers {
			l.idleWork.Add(-1)
			return
		}
		select {
		case a = <-l.handoff:
			l.idleWork.Add(-1)
		case <-l.done:
			l.idleWork.Add(-1)
			return
		}
	}
}

func clientAddr(c net.Conn) netip.AddrPort {
	ta, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// serveConn runs one admitted connection to its end.
// The plain forward returns while its pipe runs on and calls connDone at
// its end.
func (l *Listener) serveConn(a accepted) {
	if a.front && !l.admitFromFront(&a) {
		return
	}
	var conn net.Conn = a.c
	var sec secured
	if l.cfg.TLS != nil {
		if sec = l.terminate(a.c, a.client); sec.client == nil {
			return
		}
		conn = sec.client
	}
	switch {
	case l.cfg.Handler != nil:
		defer l.connDone(a.client)
		l.cfg.Handler.ServeConn(l.ctx, a.c, a.index)
	case l.raw != nil:
		l.serveRaw(conn, a, sec)
	default:
		l.forwardConn(conn, a, sec)
	}
}

// connDone releases the slots of an admitted connection that has ended.
func (l *Listener) connDone(client netip.AddrPort) {
	l.release(client)
	l.held.Add(-1) // before Active: who sees Active at 0 sees the counts free
	l.stats.Active.Add(-1)
	l.conns.Done()
}

// Shutdown stops accepting, lets open connections finish until ctx is done,
// then closes the rest (their access lines say end=shutdown). It returns
// when every goroutine of the listener has exited: nil if all connections
// finished on their own, else ctx's error.
func (l *Listener) Shutdown(ctx context.Context) error {
	l.stopAccepting()
	l.accepting.Wait()
	drained := make(chan struct{})
	go l.waitConns(drained)
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = ctx.Err()
		l.cancel()
		<-drained
	}
	l.cancel()
	l.workers.Wait()
	l.releaseFront()
	l.closePool()
	l.closeUpstreams()
	return err
}

// Started is closed once Serve accepts (or the listener stopped accepting
// without ever serving). A reload waits for it before the listener it
// replaces stops accepting on the same sockets, so that one of the two
// always accepts and no client waits on the swap.
func (l *Listener) Started() <-chan struct{} { return l.started }

func (l *Listener) markStarted() { l.startOnce.Do(func() { close(l.started) }) }

// StopAccepting closes the listen sockets and returns once no accept loop
// runs, leaving open connections alone (Shutdown or Close ends them). A
// reload calls it on the listener it replaces before the replacement
// serves, so that a handed-over socket has one reader and every connection
// accepted after the reload gets the new config.
func (l *Listener) StopAccepting() {
	l.stopAccepting()
	l.accepting.Wait()
}

// waitConns closes drained once every connection goroutine has returned.
func (l *Listener) waitConns(drained chan<- struct{}) {
	l.conns.Wait()
	close(drained)
}

// Close closes the listen sockets and every connection now, and waits for
// the listener's goroutines. It is idempotent.
func (l *Listener) Close() error {
	l.stopAccepting()
	l.cancel()
	l.accepting.Wait()
	l.conns.Wait()
	l.workers.Wait()
	l.releaseFront()
	l.closePool()
	l.closeUpstreams()
	return nil
}

// releaseFront lets go of the Pool's front, once the listener's sockets
// and connections have left it (its accept and connection counts are at
// zero): the last listener to let go stops the loop. Idempotent.
func (l *Listener) releaseFront() {
	l.mu.Lock()
	f := l.frontHold
	l.frontHold = nil
	l.mu.Unlock()
	if f != nil {
		l.pool.releaseFront(f)
	}
}

func (l *Listener) closePool() {
	if l.ownPool {
		l.pool.Close()
	}
}

func (l *Listener) stopAccepting() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.done)
	g := l.fgroup
	l.mu.Unlock()
	if g != nil {
		l.front.post(func() { l.front.removeListens(g) })
	}
	l.markStarted() // whoever waits for Serve waits no more
	l.closeFrontFDs()
	for _, ln := range l.lns {
		ln.Close()
	}
}

// Addrs returns the bound address of each listen socket, in Listen order.
func (l *Listener) Addrs() []net.Addr {
	return append([]net.Addr(nil), l.addrs...)
}

// Stats returns the listener's live counters.
func (l *Listener) Stats() *Stats {
	return &l.stats
}
