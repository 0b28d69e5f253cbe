package upstream

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/dns/dnsmessage"
)

// The bounds of a cached answer's lifetime: a TTL of 0 or 1 s would send a
// query per connection, a day-long one would miss a move for a day.
const (
	MinTTL = 5 * time.Second
	MaxTTL = 5 * time.Minute
)

const defaultQueryTimeout = 2 * time.Second

// ResolverConfig configures a Resolver.
type ResolverConfig struct {
	// Servers are the nameservers asked, "ip:port" each, in order until
	// one answers. nil: the nameservers of /etc/resolv.conf (127.0.0.1:53
	// if it names none).
	Servers []string
	// Timeout bounds one query to one server. Zero: 2 s.
	Timeout time.Duration
	// Log receives the lines about names that stop (or start again)
	// resolving. The zero Logger logs nothing.
	Log zerolog.Logger
}

// Answer is the addresses of a name: IPv4 first, then IPv6, each in the
// server's order, and how long they may be used (TTL clamped to
// MinTTL..MaxTTL). An Answer is never changed once made.
type Answer struct {
	Addrs []netip.Addr
	TTL   time.Duration
}

// Resolver asks DNS servers for A and AAAA records and caches the answers
// for their TTL. Go's net.Resolver does not tell the TTL, hence this small
// client. Names are looked up as written (no search domains, no
// /etc/hosts). Lookup never waits on a name it has an answer for: a stale
// answer is served while a refresh runs in the background, and when the
// refresh fails the last good answer stays (and that is logged once).
type Resolver struct {
	servers []string
	timeout time.Duration
	log     zerolog.Logger
	ctx     context.Context // cancelled by Close: ends queries
	cancel  context.CancelFunc
	wg      sync.WaitGroup // background refreshes
	skew    atomic.Int64   // added to the clock: tests move time on

	mu     sync.Mutex // guards the following
	names  map[string]*cached
	closed bool
}

// cached is what the Resolver knows of one name.
type cached struct {
	ans      *Answer       // the last good answer; nil before the first
	err      error         // the latest failure, nil once it resolves
	expires  time.Time     // when to ask again
	inflight chan struct{} // a query is running; closed when it ends
}

// NewResolver returns a Resolver. It starts no goroutine and sends nothing.
func NewResolver(cfg ResolverConfig) *Resolver {
	servers := cfg.Servers
	if servers == nil {
		servers = systemServers()
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = defaultQueryTimeout
	}
	r := &Resolver{servers: servers, timeout: timeout, log: cfg.Log, names: make(map[string]*cached)}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r
}

// now is the clock of the cache.
func (r *Resolver) now() time.Time { return time.Now().Add(time.Duration(r.skew.Load())) }

// systemServers reads /etc/resolv.conf.
func systemServers() []string {
	f, err := os.Open("/etc/resolv.conf")
	if err == nil {
		defer f.Close()
		if s := parseResolvConf(f); len(s) > 0 {
			return s
		}
	}
	return []string{"127.0.0.1:53"}
}

// Close ends the queries in flight and waits for the background refreshes.
// Lookups after Close answer from the cache or fail.
func (r *Resolver) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}

// Lookup returns name's addresses from the cache. A name seen for the
// first time (or whose last query failed more than MinTTL ago, with no
// answer ever) is asked for now and the caller waits; otherwise an expired
// answer starts a refresh in the background and is returned as it is.
func (r *Resolver) Lookup(name string) (*Answer, error) {
	r.mu.Lock()
	c := r.names[name]
	if c == nil {
		c = &cached{}
		r.names[name] = c
	}
	stale := !r.now().Before(c.expires)
	if c.ans != nil || !stale {
		if stale && c.inflight == nil && !r.closed {
			c.inflight = make(chan struct{})
			r.wg.Add(1)
			go r.refresh(name, c)
		}
		ans, err := c.ans, c.err
		r.mu.Unlock()
		if ans != nil {
			return ans, nil
		}
		return nil, err
	}
	wait := c.inflight
	if wait == nil {
		c.inflight = make(chan struct{})
	}
	r.mu.Unlock()
	if wait == nil {
		r.update(name, c)
	} else {
		<-wait
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.ans != nil {
		return c.ans, nil
	}
	return nil, c.err
}

// Names returns the names the cache holds, sorted.
func (r *Resolver) Names() []string {
	r.mu.Lock()
	out := make([]string, 0, len(r.names))
	for name := range r.names {
		out = append(out, name)
	}
	r.mu.Unlock()
	slices.Sort(out)
	return out
}

// Keep drops from the cache every name not in names. A reload that
// removes the last listener naming a host would otherwise leave its answer
// cached for the process's life, and one for every name the config ever
// named. A query in flight for a dropped name ends as it would (within the
// query timeout) and its answer is discarded; a later Lookup asks again.
func (r *Resolver) Keep(names []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name := range r.names {
		if !slices.Contains(names, name) {
			delete(r.names, name)
		}
	}
}

// refresh is a background update.
func (r *Resolver) refresh(name string, c *cached) {
	defer r.wg.Done()
	r.update(name, c)
}

// update asks for name and stores the outcome in c; c.inflight was set by
// the caller and is closed here.
func (r *Resolver) update(name string, c *cached) {
	ans, err := r.Resolve(r.ctx, name)
	r.mu.Lock()
	defer r.mu.Unlock()
	defer func() { close(c.inflight); c.inflight = nil }()
	if err == nil {
		if c.err != nil && c.ans != nil {
			r.log.Info().Str("name", name).Str("addresses", joinAddrs(ans.Addrs)).
				Msg("upstream name resolves again")
		}
		c.ans, c.err, c.expires = ans, nil, r.now().Add(ans.TTL)
		return
	}
	first := c.err == nil
	c.err, c.expires = err, r.now().Add(MinTTL)
	if !first || r.ctx.Err() != nil {
		return
	}
	if c.ans != nil {
		r.log.Warn().Str("name", name).Err(err).Str("addresses", joinAddrs(c.ans.Addrs)).
			Msg("upstream name does not resolve; keeping its last good answer")
	} else {
		r.log.Warn().Str("name", name).Err(err).Msg("upstream name does not resolve")
	}
}

// Resolve asks the servers for name's A and AAAA records now, bypassing
// the cache: `relay check -resolve` uses it. A name with neither is an
// error.
func (r *Resolver) Resolve(ctx context.Context, name string) (*Answer, error) {
	if ip, err := netip.ParseAddr(name); err == nil {
		return &Answer{Addrs: []netip.Addr{ip.Unmap()}, TTL: MaxTTL}, nil
	}
	qname, err := fqdn(name)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", name, err)
	}
	var errs []error
	for _, server := range r.servers {
		ans, err := r.ask(ctx, server, qname)
		if err == nil {
			return ans, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", server, err))
		if errors.Is(err, errNoSuchHost) || ctx.Err() != nil {
			break // the name is gone, not the server
		}
	}
	return nil, fmt.Errorf("resolve %s: %w", name, errors.Join(errs...))
}

// ask gets name's A then AAAA records from one server.
func (r *Resolver) ask(ctx context.Context, server string, name dnsmessage.Name) (*Answer, error) {
	v4, ttl4, err := r.exchange(ctx, server, name, dnsmessage.TypeA)
	if err != nil {
		return nil, err
	}
	v6, ttl6, err := r.exchange(ctx, server, name, dnsmessage.TypeAAAA)
	if err != nil {
		return nil, err
	}
	if len(v4)+len(v6) == 0 {
		return nil, errors.New("no address (A or AAAA) for the name")
	}
	ttl := ^uint32(0)
	if len(v4) > 0 {
		ttl = ttl4
	}
	if len(v6) > 0 {
		ttl = min(ttl, ttl6)
	}
	return &Answer{Addrs: append(v4, v6...), TTL: clampTTL(ttl)}, nil
}

func clampTTL(ttl uint32) time.Duration {
	return min(max(time.Duration(ttl)*time.Second, MinTTL), MaxTTL)
}

// exchange sends one query over UDP, and again over TCP if the answer
// was truncated.
func (r *Resolver) exchange(ctx context.Context, server string, name dnsmessage.Name, typ dnsmessage.Type) ([]netip.Addr, uint32, error) {
	id := uint16(rand.Uint32())
	q, err := buildQuery(id, name, typ)
	if err != nil {
		return nil, 0, err
	}
	msg, err := r.roundTrip(ctx, "udp", server, q)
	if err != nil {
		return nil, 0, err
	}
	addrs, ttl, err := parseAnswer(msg, id, name, typ)
	if !errors.Is(err, errTruncated) {
		return addrs, ttl, err
	}
	if msg, err = r.roundTrip(ctx, "tcp", server, q); err != nil {
		return nil, 0, err
	}
	return parseAnswer(msg, id, name, typ)
}

// roundTrip sends q to server and reads one reply, within the query
// timeout. Over TCP each message carries a two-byte length.
func (r *Resolver) roundTrip(ctx context.Context, network, server string, q []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, network, server)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	if network == "udp" {
		if _, err := c.Write(q); err != nil {
			return nil, err
		}
		buf := make([]byte, 1232) // the EDNS-era safe UDP size; more comes truncated
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	framed := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(q)), uint16(len(q)))
	if _, err := c.Write(append(framed, q...)); err != nil {
		return nil, err
	}
	var size [2]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(size[:]))
	if _, err := io.ReadFull(c, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

func joinAddrs(addrs []netip.Addr) string {
	b := make([]byte, 0, 16*len(addrs))
	for i, a := range addrs {
		if i > 0 {
			b = append(b, ',')
		}
		b = a.AppendTo(b)
	}
	return string(b)
}
