// Package forward relays TCP connections: a Listener accepts on one socket per
// port, asks the ACL hook, dials the upstream with failover and moves the
// bytes with its own splice(2) engine (Pipe) until both directions end. Raw
// mode (Config.Raw) serves byte-exact, low-latency devices such as ticket
// printers, optionally one client at a time with a FIFO queue.
//
// TLS (Config.TLS, Config.UpstreamTLS) wraps the connection at either edge:
// the handshake runs before the forward starts, and the copy engine moves
// the bytes of a wrapped conn (splice needs both ends to be sockets).
//
// How a connection starts: a plain tcp listener (no TLS, PROXY header,
// raw mode or Handler, IP upstreams) does not accept through Go's net
// package. The
// Pool's front (front_linux.go), one epoll loop on raw non-blocking
// sockets, accepts, asks the ACL and the limits, connects to the upstream
// and moves the first bytes itself, with the same half-close, byte
// counts, dial failover and access line as the engine, and no goroutine
// of the connection's own. A connection that lives past parkAfter, or
// whose read fills the loop's buffer (bulk), goes to the engine below as
// a pair parked bare (parker.adoptBare), so a short connection costs
// about 15 syscalls, one allocation and no goroutine, and an idle one
// never holds a goroutine or a poll descriptor (BENCHMARKS.md, "The
// front"). The loop runs while a listener holds it, from Listen to the
// end of its Close or Shutdown: a reload that removes the last plain tcp
// listener stops it once that listener has drained, and the next one
// starts another.
//
// How an idle connection is held: each direction of a forward (tcp and
// raw listeners, and FTP data transfers through Start) runs in a
// goroutine of its own while bytes move. When its source has nothing to
// read and the pair has moved nothing for parkAfter (1 s), the direction
// parks instead of waiting in Go's netpoller: it registers the source
// socket in the Pool's epoll set (EPOLLIN, one-shot; one set and one
// goroutine per Pool, so per daemon) and its goroutine ends. The parker
// goroutine, itself waiting in the netpoller on that epoll set, starts a
// fresh goroutine for a direction whose socket becomes readable (bytes,
// EOF, reset), and the direction goes on where it stopped: the same
// splice engine, byte counters, half-close and access or job line. While
// both directions are parked the connection has no goroutine and no
// timer: one sweep timer per parker ends the pairs whose idle timeout
// passed (off by at most min(idle/16, 1 s), as for running ones), and
// Shutdown and Close wake parked directions as they wake waiting ones. A
// raw job keeps its turn, its device's keepalive and TCP_USER_TIMEOUT
// while parked (they are the socket's, not the goroutine's). Short
// connections end before parkAfter and never pay for a park.
//
// A pair whose two directions are parked goes one step further when both
// its conns are plain TCP (not TLS): it is parked bare. It keeps a
// duplicate of each socket's descriptor, registered in the parker's set,
// and closes the two net.TCPConn, which frees their netFD, addresses and
// RawConns and hands each socket's runtime poll descriptor back to the
// runtime (the sockets stay open through the duplicates, with their
// buffers and options). When either socket becomes readable, or the pair
// is stopped (idle timeout, Shutdown, Close), the pair is made whole
// again with net.FileConn (its keepalive options put back) and both
// directions go on where they stopped. A park and wake bare cost about
// 60 syscalls a pair (dup, close, epoll, and per socket FileConn's dup,
// fcntl, getsockname, getpeername and the keepalive options read and
// set) where a plain park costs one or two; so a pair goes bare when it
// has been quiet for parkAfter, and a pair parked crowded (young, maybe
// busy) goes bare at once only until it first wakes from it; after
// that, the parker's sweep parks it bare once it has been quiet for
// parkAfter.
//
// What an idle connection costs then (BenchmarkIdleScale, 9 600
// connections, settled RSS): 1.04 KiB for a connection the front handed
// over, which never had a net.TCPConn, a poll descriptor or a goroutine:
// the pair with its two directions 640 bytes, the access-line record
// 144, the parker's index 16, with GC metadata and fragmentation. A plain
// TCP pair that parks from the engine (raw, FTP data, a front connection
// woken and quiet again) parks bare the same way once quiet for
// parkAfter (a TLS pair keeps its conns); before the front, such pairs settled at 1.9-2.0 KiB (3.0
// when a parked pair kept its conns), because of what a burst left
// behind: the runtime never frees a poll descriptor or a goroutine
// descriptor, it only reuses them, so the most conns and goroutines open
// at once decide how many stay resident. The goroutines' stacks are free
// once parked, but the runtime returns them to the OS only bit by bit, so
// after a burst of parks the parker releases free memory itself, once
// (see burst); and a crowded parker parks idle directions at once (see
// crowdedDirections).
//
// Limits across a reload: a Listener that Replaces a retired one of the
// same name shares its count of open connections and its per-source
// count, so max_conns and per_source hold over the old listener's
// connections still draining, at the new values (held.go).
//
// forward's job ends at the connection: it does not parse what it carries
// (ftppassive does that for FTP, reusing Listener through Handler and Pipe),
// it does not decide the ACL (the Admit hook does) or the per-source limits
// (package limit does), it does not choose among upstreams or remember which
// are down (an upstream.Set does), and it does not export metrics (Stats is
// read by the admin endpoint).
package forward

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/edgerelay/relay/limit"
	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/upstream"
)

// ErrClosed is returned by Serve after Close or Shutdown.
var ErrClosed = errors.New("forward: listener closed")

// Defaults for the zero values of Config, also ftppassive's. They are the
// only copy: config applies them to listeners that do not set a value.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultIdleTimeout    = time.Hour
)

// Config describes one listener: a port or a port range and the upstream
// failover list of each port.
type Config struct {
	// Name is the listener name, the "listener" field of every log line.
	Name string
	// Listen holds one "host:port" bind address per port.
	Listen []string
	// Upstreams[i] is the failover list, tried in order, for Listen[i].
	Upstreams [][]string
	// ConnectTimeout bounds each upstream connection attempt. Zero: 5s.
	ConnectTimeout time.Duration
	// IdleTimeout ends a connection that moved no byte in either direction
	// for this long. Zero: 1h.
	IdleTimeout time.Duration
	// MaxConns caps the connections open at once on this listener (all its
	// ports together, and those of the listener of its name it Replaces
	// that still run); further clients are closed at once. Zero: unlimited.
	MaxConns int
	// Freebind binds listen addresses the box does not have yet
	// (IP_FREEBIND), as the backup of an HA pair needs for the virtual
	// address. False: binding such an address fails.
	Freebind bool
	// Admit is the ACL hook, asked once per connection before any upstream
	// dial. nil admits everyone.
	Admit func(netip.AddrPort) bool
	// PerSource limits the connections of each client source, asked after
	// Admit and before any upstream dial (see limit.Config). The zero value
	// limits nothing.
	PerSource limit.Config
	// Refused logs a client that PerSource or a PROXY header check turned
	// away, with the reason. nil: the listener's own log, at most a few
	// lines a second.
	Refused func(client netip.AddrPort, reason string)
	// TLS, when set, terminates TLS on every accepted connection: the
	// handshake runs within ConnectTimeout before any upstream dial, and a
	// client whose handshake fails is closed with one warning line. Keep
	// the Config fixed and change certificates through its
	// GetConfigForClient (certs.Server does). nil: plaintext clients.
	TLS *tls.Config
	// AdmitTLS is the ACL hook of a TLS listener, asked within the
	// handshake once the client's certificate is verified (when TLS is a
	// certs.Server's: certs.ConnVerifier; else after the handshake),
	// before any upstream dial, with the client's verified certificate
	// (nil if it sent none). A rejected client gets the alert
	// bad_certificate. Besides the decision it returns the deciding line,
	// which the access line shows as "acl". When set, Admit is not asked.
	AdmitTLS func(client netip.AddrPort, cert *x509.Certificate) (ok bool, rule string)
	// UpstreamTLS, when set, originates TLS to the upstream: it returns the
	// config for a connection to addr, and the handshake runs within
	// ConnectTimeout; a failed handshake counts as a failed dial. nil:
	// plaintext upstream.
	UpstreamTLS func(addr string) *tls.Config
	// ProxyProtocol, 1 or 2, sends every upstream connection a PROXY
	// protocol header of that version naming the client and the address
	// it connected to, before any other byte. Zero: none.
	ProxyProtocol int
	// AcceptProxy lists the front load balancers trusted to send a PROXY
	// header (v1 or v2). A connection from one must start with a header,
	// and the client it names stands for the connection's source for the
	// ACL, PerSource, logs and ProxyProtocol; a header for the front itself
	// (LOCAL, UNKNOWN) keeps the front's address. A connection from anyone
	// else that opens with a header is closed. Empty: headers are not read.
	AcceptProxy []netip.Prefix
	// ProxyHeaderTimeout bounds the wait for a trusted front's header.
	// Zero: DefaultProxyHeaderTimeout.
	ProxyHeaderTimeout time.Duration
	// Dial connects to an upstream. nil: a net.Dialer with TCP keepalive.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Upstream chooses the address of each dial from Upstreams and keeps
	// their health; the Listener takes it over (Serve starts it, Close and
	// Shutdown close it). nil: a Set over Upstreams with passive health
	// only (made unless Handler is set, which dials for itself).
	Upstream *upstream.Set
	// Handler takes over admitted connections instead of the plain forward.
	// nil: dial the upstream and Pipe.
	Handler Handler
	// Raw switches the listener to raw mode (see Raw). nil: plain TCP.
	Raw *Raw
	// Pool supplies splice pipes; one Pool shared by every listener keeps
	// the whole process within one pipe budget. nil: the listener makes
	// its own and closes it on Close.
	Pool *Pool
	// Inherit, when set, holds for each Listen entry a listen socket to take
	// over instead of binding a new one (nil entries are bound). A reload
	// passes the sockets of the listener being replaced (Listener.Files), so
	// the port never closes and no pending connection is reset. The
	// Listener dups what it takes; the caller closes these files.
	Inherit []*os.File
	// Replaces lists the listeners this one succeeds on a reload. The
	// connections still open on the one of the same Name count against
	// this one's MaxConns and PerSource, and free their places as they end
	// (see held.go). A port of an exclusive raw listener shares the turn
	// queue of their port on the same Listen entry with the same
	// upstreams, if exclusive too: the job a retired listener still runs
	// keeps the device, and this one's clients wait behind it and its
	// queue. nil: counts and queues start empty.
	Replaces []*Listener
	// Log receives the access lines and warnings. The zero Logger logs
	// nothing (zerolog treats a Logger without a writer as disabled).
	Log zerolog.Logger
}

// Handler takes over an accepted, admitted client connection, so that other
// protocols (ftppassive) reuse the listener machinery: accept back-off,
// max_conns, ACL and drain. index is the position in Listen/Upstreams the
// client arrived on. ServeConn owns client and must close it; it must return
// soon after ctx is cancelled (Shutdown past its grace, or Close).
type Handler interface {
	ServeConn(ctx context.Context, client *net.TCPConn, index int)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, client *net.TCPConn, index int)

// ServeConn calls f.
func (f HandlerFunc) ServeConn(ctx context.Context, client *net.TCPConn, index int) {
	f(ctx, client, index)
}

func (c *Config) connectTimeout() time.Duration {
	if c.ConnectTimeout <= 0 {
		return DefaultConnectTimeout
	}
	return c.ConnectTimeout
}

func (c *Config) idleTimeout() time.Duration {
	if c.IdleTimeout <= 0 {
		return DefaultIdleTimeout
	}
	return c.IdleTimeout
}
