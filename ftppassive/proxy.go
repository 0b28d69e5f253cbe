package ftppassive

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

	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/forward"
	"github.com/edgerelay/relay/limit"
	"github.com/edgerelay/relay/upstream"
)

// ErrClosed is returned by Serve after Close or Shutdown.
var ErrClosed = errors.New("ftppassive: proxy closed")

// DefaultDataTimeout is the data timeout of a zero Config (the only copy;
// config applies it). The connect and idle timeouts default as forward's.
const DefaultDataTimeout = 30 * time.Second

// Config describes one FTP listener: its control port(s), the FTP server
// behind each, and the relay-owned data ports.
type Config struct {
	// Name is the listener name, the "listener" field of every log line.
	Name string
	// Listen holds one "host:port" control address per port, usually one.
	Listen []string
	// Upstreams[i] is the failover list of FTP servers for Listen[i].
	Upstreams [][]string
	// DataPorts is the inclusive range the relay takes its data ports from
	// (passive and active). Zero: ports chosen by the kernel, no limit.
	DataPorts [2]uint16
	// Ports is the table of DataPorts's range this proxy takes its ports
	// from, shared with other proxies (a reload's predecessor, the process
	// of a binary upgrade) so that none picks a port another holds; it must
	// have the same range, and outlive the proxy. nil: a table of its own.
	Ports *Ports
	// PublicIP is the address advertised in 227 replies. Zero: the local
	// address of the client's control connection.
	PublicIP netip.Addr
	// TrustServerIP makes the relay dial the address the server advertises
	// in its 227 reply. false: the server's data port is dialled on the
	// address of the control connection's server (servers behind NAT often
	// advertise addresses nobody can reach).
	TrustServerIP bool
	// DataTimeout closes a data port nobody connected to. Zero: 30s.
	DataTimeout time.Duration
	// ConnectTimeout bounds each dial to the server (control and data).
	// Zero: 5s.
	ConnectTimeout time.Duration
	// IdleTimeout ends a control connection on which nothing moved for this
	// long; bytes moving on one of its data connections count as activity.
	// It also ends a data connection idle for this long. Zero: 1h.
	IdleTimeout time.Duration
	// MaxConns caps open control connections, counting those still open
	// on the listener this one Replaces. Zero: unlimited.
	MaxConns int
	// Freebind binds the control listen address even while the box does
	// not have it (see forward.Config.Freebind). Data ports are bound on
	// demand, on the address the client reached, so they need no such flag.
	Freebind bool
	// Admit is the ACL hook, asked once per control connection. nil: allow.
	Admit func(netip.AddrPort) bool
	// PerSource limits the control connections of each client source (see
	// forward.Config.PerSource); data connections are not counted. The
	// zero value limits nothing.
	PerSource limit.Config
	// Refused logs a client PerSource turned away, and a connection to a
	// data port from a foreign address (reason "data_theft: …"). The
	// daemon passes the ACL's rate-limited log (acl.Set.Refusals), so a
	// flood costs a few lines and a summary. nil: the listener's log, at
	// most theftBurst theft warnings a second.
	Refused func(client netip.AddrPort, reason string)
	// Dial connects to the FTP server (control and data). nil: net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Upstream chooses the FTP server of each control connection from
	// Upstreams and keeps their health; the proxy takes it over (Serve
	// starts it, Close and Shutdown close it). nil: a Set over Upstreams
	// with passive health only.
	Upstream *upstream.Set
	// Pool supplies splice pipes for the data connections; one Pool shared
	// by every listener keeps the process within one pipe budget. nil: the
	// proxy makes its own and closes it on Close.
	Pool *forward.Pool
	// Inherit hands the control sockets of a proxy being replaced to this
	// one (see forward.Config.Inherit). nil: bind.
	Inherit []*os.File
	// Replaces lists the control listeners (Proxy.Control, or the
	// forward.Listener of a tcp or raw listener) this proxy succeeds on a
	// reload: the control connections still open on the one of the same
	// Name count against MaxConns and PerSource (forward.Config.Replaces).
	// nil: counts start empty.
	Replaces []*forward.Listener
	// Log receives session lines and warnings. The zero Logger logs nothing.
	Log zerolog.Logger
}

func (c *Config) dataTimeout() time.Duration {
	if c.DataTimeout <= 0 {
		return DefaultDataTimeout
	}
	return c.DataTimeout
}

func (c *Config) connectTimeout() time.Duration {
	if c.ConnectTimeout <= 0 {
		return forward.DefaultConnectTimeout
	}
	return c.ConnectTimeout
}

func (c *Config) idleTimeout() time.Duration {
	if c.IdleTimeout <= 0 {
		return forward.DefaultIdleTimeout
	}
	return c.IdleTimeout
}

// ports is the table to take data ports from; nil: the kernel picks.
func (c *Config) ports() *Ports {
	if c.Ports != nil {
		return c.Ports
	}
	if c.DataPorts[0] == 0 {
		return nil
	}
	return newPrivatePorts(c.DataPorts[0], c.DataPorts[1])
}

func (c *Config) validate() error {
	first, last := c.DataPorts[0], c.DataPorts[1]
	if (first == 0) != (last == 0) || first > last {
		return fmt.Errorf("ftppassive: data ports %d-%d: want first <= last, both non-zero (or both zero)", first, last)
	}
	if c.Ports != nil && c.Ports.Range() != c.DataPorts {
		r := c.Ports.Range()
		return fmt.Errorf("ftppassive: data ports %d-%d: the shared table is for %d-%d", first, last, r[0], r[1])
	}
	if len(c.Upstreams) != len(c.Listen) {
		return fmt.Errorf("ftppassive: %d listen addresses but %d upstream lists", len(c.Listen), len(c.Upstreams))
	}
	for i, ups := range c.Upstreams {
		if len(ups) == 0 {
			return fmt.Errorf("ftppassive: no upstream for %s", c.Listen[i])
		}
	}
	return nil
}

// Stats are the counters of one Proxy. Every field is atomic; the admin
// endpoint reads them while the proxy runs. Counters only grow; the fields
// marked gauge go up and down.
type Stats struct {
	// Control holds the control listener's counters kept by forward:
	// connections accepted, rejected by the ACL, refused by max_conns, open.
	Control *forward.Stats

	// Sessions counts control connections relayed to an FTP server.
	Sessions atomic.Uint64
	// UpstreamFailed counts control connections answered 421 because no
	// server of the failover list could be reached.
	UpstreamFailed atomic.Uint64
	// DialFailures counts failed dials to the server or to an active-mode
	// client, control and data, each address tried once.
	DialFailures atomic.Uint64
	// LinesTooLong counts sessions closed because a peer sent a control line
	// longer than the limit (8 KiB).
	LinesTooLong atomic.Uint64
	// Opaque counts sessions that turned to plain TCP after AUTH TLS/SSL.
	Opaque atomic.Uint64

	// DataOpened counts data connections established and relayed.
	DataOpened atomic.Uint64
	// DataFailed counts data channels that could not be set up (no free
	// port, a failed dial, a bad 227/229) or were never used (data timeout,
	// replaced by a newer PASV/EPSV/PORT, session ended first).
	DataFailed atomic.Uint64
	// DataPortsInUse is the number of relay-owned data ports open now,
	// listening or carrying a transfer (gauge).
	DataPortsInUse atomic.Int64
	// DataTheftAttempts counts connections to a data port from an address
	// other than the session's peer; each was closed at once.
	DataTheftAttempts atomic.Uint64
	// BouncesRefused counts PORT/EPRT commands refused by RFC 2577 checks
	// (another address than the client's, or a port below 1024).
	BouncesRefused atomic.Uint64
	// PassivePortsRefused counts 227/229 replies naming a data port below
	// 1024, answered 425 instead of dialled.
	PassivePortsRefused atomic.Uint64

	// Bytes moved, counted per chunk as written. Control bytes include the
	// relay's own rewritten lines; add both for the listener's total.
	ControlBytesToUpstream atomic.Uint64 // client -> server, control
	ControlBytesToClient   atomic.Uint64 // server -> client, control
	DataBytesToUpstream    atomic.Uint64 // client -> server, data (uploads)
	DataBytesToClient      atomic.Uint64 // server -> client, data (downloads)
}

// Proxy is an FTP control-channel proxy with its data-port pool.
type Proxy struct {
	cfg Config
	log zerolog.Logger
	// thefts limits the proxy's own theft warnings (all sessions
	// together) to theftBurst a second.
	thefts *zerolog.BurstSampler
	ln     *forward.Listener
	ports  *portPool
	pipes  *forward.Pool
	ups    *upstream.Set // the listener's; forward closes it
	stats  Stats
	// dialClient connects to an active-mode client's data port: dialFrom,
	// or a test's stand-in that adds the latency of a real network.
	dialClient func(ctx context.Context, from netip.Addr, addr netip.AddrPort) (net.Conn, error)
	// foreignPorts limits the warnings about data ports held by another
	// program to one a minute.
	foreignPorts *zerolog.BurstSampler

	ownPool   bool        // pipes was made here, so Close closes it
	tlsNoted  atomic.Bool // the AUTH TLS advice was logged
	closePool sync.Once
}

// Listen binds the control sockets now; Serve starts accepting.
func Listen(cfg Config) (*Proxy, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, log: cfg.Log.With().Str("listener", cfg.Name).Logger(), ups: cfg.Upstream}
	p.thefts = &zerolog.BurstSampler{Burst: theftBurst, Period: time.Second}
	p.foreignPorts = &zerolog.BurstSampler{Burst: 1, Period: time.Minute}
	p.ports = newPortPool(cfg.ports(), &p.stats.DataPortsInUse, p.portTaken)
	p.dialClient = p.dialFrom
	if p.ups == nil {
		s, err := upstream.New(upstream.Config{
			Listener: cfg.Name,
			Lists:    cfg.Upstreams,
			Timeout:  cfg.connectTimeout(),
			Dial:     cfg.Dial,
			Log:      cfg.Log,
		})
		if err != nil {
			return nil, fmt.Errorf("ftppassive: %w", err)
		}
		p.ups = s
	}
	ln, err := forward.Listen(forward.Config{
		Name:           cfg.Name,
		Listen:         cfg.Listen,
		Upstreams:      cfg.Upstreams,
		ConnectTimeout: cfg.ConnectTimeout,
		IdleTimeout:    cfg.IdleTimeout,
		MaxConns:       cfg.MaxConns,
		Freebind:       cfg.Freebind,
		Admit:          cfg.Admit,
		PerSource:      cfg.PerSource,
		Refused:        cfg.Refused,
		Dial:           cfg.Dial,
		Handler:        forward.HandlerFunc(p.serveControl),
		Upstream:       p.ups, // forward starts and closes it with the listener
		Pool:           cfg.Pool,
		Inherit:        cfg.Inherit,
		Replaces:       cfg.Replaces,
		Log:            cfg.Log,
	})
	if err != nil {
		p.ups.Close()
		return nil, err
	}
	p.ln = ln
	// Kept, the control listeners replaced would stay reachable through
	// this proxy, and through each successor every proxy a reload ever
	// retired (their Handler is their proxy).
	p.cfg.Replaces = nil
	p.stats.Control = ln.Stats()
	p.pipes = cfg.Pool
	if p.pipes == nil {
		// Pipes idle between transfers are kept for the next one: FTP
		// clients open a data connection per file.
		p.pipes, p.ownPool = forward.NewPool(0), true
	}
	return p, nil
}

// portTaken warns that another program holds a port of the data range.
func (p *Proxy) portTaken(port uint16, err error) {
	log := p.log.Sample(p.foreignPorts)
	log.Warn().Uint16("port", port).Err(err).
		Msg("ftp data port held by another program; took another (give ftp.data_ports a range nobody else uses)")
}

func (p *Proxy) closeOwnPool() {
	p.closePool.Do(func() {
		if p.ownPool {
			p.pipes.Close()
		}
	})
}

// Serve accepts control connections until Close or Shutdown, then returns
// ErrClosed.
func (p *Proxy) Serve() error {
	err := p.ln.Serve()
	if errors.Is(err, forward.ErrClosed) {
		return ErrClosed
	}
	return err
}

// Shutdown stops accepting and lets sessions (and their transfers) finish
// until ctx is done, then closes them. It returns when all have ended.
func (p *Proxy) Shutdown(ctx context.Context) error {
	err := p.ln.Shutdown(ctx)
	p.closeOwnPool()
	return err
}

// Close closes the listener, every session and every data port now, and
// waits for their goroutines. It is idempotent.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.closeOwnPool()
	return err
}

// Addrs returns the bound control addresses.
func (p *Proxy) Addrs() []net.Addr { return p.ln.Addrs() }

// StopAccepting stops taking control connections (see
// forward.Listener.StopAccepting); sessions go on.
func (p *Proxy) StopAccepting() { p.ln.StopAccepting() }

// Started is closed once Serve accepts (see forward.Listener.Started).
func (p *Proxy) Started() <-chan struct{} { return p.ln.Started() }

// Files duplicates the control sockets for a replacement's Config.Inherit.
func (p *Proxy) Files() ([]*os.File, error) { return p.ln.Files() }

// Control returns the listener of the control connections, for the
// Replaces of a successor on a reload.
func (p *Proxy) Control() *forward.Listener { return p.ln }

// Stats returns the live counters.
func (p *Proxy) Stats() *Stats { return &p.stats }

// dial connects to addr with the configured dialer and timeout.
func (p *Proxy) dial(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.connectTimeout())
	defer cancel()
	if p.cfg.Dial != nil {
		return p.cfg.Dial(ctx, "tcp", addr)
	}
	d := net.Dialer{KeepAliveConfig: dataKeepAlive()}
	return d.DialContext(ctx, "tcp", addr)
}

// dialFrom connects to addr from the local address from. Used to reach an
// active-mode client, which expects its data from the address it
// connected to.
func (p *Proxy) dialFrom(ctx context.Context, from netip.Addr, addr netip.AddrPort) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.connectTimeout())
	defer cancel()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), KeepAliveConfig: dataKeepAlive()}
	return d.DialContext(ctx, "tcp", addr.String())
}

// dialUpstream tries the servers of Listen[index] that are up, in order;
// it returns upstream.ErrAllDown when none was up to try.
func (p *Proxy) dialUpstream(ctx context.Context, index int) (net.Conn, error) {
	var errs []error
	cur := p.ups.Begin(index)
	for t := cur.Next(); t != nil; t = cur.Next() {
		c, err := p.dial(ctx, t.String())
		if err == nil {
			cur.Worked()
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		cur.Failed(err)
		p.stats.DialFailures.Add(1)
		if !errors.As(err, new(*net.OpError)) { // which names the address already
			err = fmt.Errorf("dial %s: %w", t, err)
		}
		errs = append(errs, err)
	}
	if err := cur.Err(); err != nil {
		return nil, err
	}
	return nil, errors.Join(errs...)
}

// shortOfResources tells whether every attempt of a failed dial (the
// errors dialUpstream joins) failed for want of this host's own resources
// (upstream.LocalShortage).
func shortOfResources(err error) bool {
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return upstream.LocalShortage(err)
	}
	errs := joined.Unwrap()
	for _, e := range errs {
		if !upstream.LocalShortage(e) {
			return false
		}
	}
	return len(errs) > 0
}

// addrPortOf returns a's address and port with IPv4-mapped IPv6 unmapped,
// so that addresses compare equal whatever the socket family.
func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
