// Package config reads relay's configuration file and turns it into the
// values the rest of the program runs on.
//
// Load reads the YAML file, lets RELAY_ environment variables override it
// (RELAY_LOG__LEVEL sets log.level: a double underscore nests, a single one
// stays part of the key), then the command-line flags registered by
// RegisterFlags. The merged keys are decoded into the file schema (unknown
// keys are errors), validated in one pass that collects every problem with
// its key path and file line, and resolved into a Config: defaults applied,
// port ranges expanded to one "host:port" per port, one failover list per
// listen port.
//
// Upstream mapping. An upstream entry is "host:port" or "host:first-last".
// A range must have as many ports as the listen range and maps 1:1 by offset
// (listen first+i goes to upstream first+i). A single port maps every listen
// port to that one address. A list of entries is a failover order, each
// entry mapped the same way on its own.
//
// Where the job ends: config does not open sockets or read the ACL file (it
// keeps its path, resolved against the config file's folder: ACLPath) or know which modes the daemon has built; it is the only
// package that imports koanf. It imports the data planes only for their
// Default* constants, so that a default is written once.
package config

import (
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/certs"
)

// Built-in defaults that belong to the file, not to a data plane, used
// where neither a listener nor the defaults section sets a value. The
// defaults of a data plane's settings (timeouts, session limits, buffers)
// are that package's exported Default* constants, applied by resolve, so
// each value is written in one place.
const (
	DefaultAdminListen   = "127.0.0.1:9090"
	DefaultShutdownGrace = 30 * time.Second
	// DefaultMaxConns caps connections per listener; the data planes' zero
	// means unlimited, which a config gets only by writing max_conns: 0.
	DefaultMaxConns = 10000
	// DefaultUserTimeout is raw.user_timeout: a powered-off printer ends
	// the job in seconds. forward's zero leaves the kernel's, which a
	// config gets by writing user_timeout: 0.
	DefaultUserTimeout = 10 * time.Second
)

// Config is a loaded, validated configuration with every default applied.
// It is plain data: safe to compare with reflect.DeepEqual across reloads.
type Config struct {
	Path          string // the file it was read from
	Log           Log
	Admin         Admin
	ACLFile       string        // as written; empty: no ACL, every source may connect
	ACLPath       string        // where ACLFile is: a relative one is beside the config file
	ShutdownGrace time.Duration // drain time on SIGTERM; zero: close at once
	Reload        Reload
	Listeners     []Listener // in file order
}

// Reload says how a reload (or a binary upgrade) retires the listeners it
// replaces or removes.
type Reload struct {
	// HardStopAfter bounds how long a retired listener's connections and
	// UDP sessions may run on; the rest are cut, with one warning. Zero:
	// they run until they end by themselves or by their idle timeout.
	HardStopAfter time.Duration
}

// Log says how much to log and in which form.
type Log struct {
	Level  zerolog.Level
	Format string // "auto" (console on a terminal, else json), "json" or "console"
}

// AdminACLName is the listener name under which the ACL file's rules reach
// the admin endpoint; no listener may take it.
const AdminACLName = "admin"

// Admin is the admin endpoint: the status page, /status.json, /metrics and
// /healthz.
type Admin struct {
	Listen string // "host:port"; empty: no admin endpoint
	// Hosts are the names a request's Host header may carry besides IP
	// addresses, localhost and the machine's hostname (which the endpoint
	// always answers to), in lower case without a trailing dot; requests
	// for any other name are refused. nil: none.
	Hosts []string
}

// Mode is what a listener does with its traffic.
type Mode string

// The listener modes of the config file.
const (
	ModeTCP Mode = "tcp" // plain TCP forwarding
	ModeFTP Mode = "ftp" // FTP control proxy with passive/active data ports
	ModeUDP Mode = "udp" // UDP port-range forwarding with sessions
	ModeRaw Mode = "raw" // byte-exact TCP pass-through, optionally one client at a time
)

// Proto is the transport protocol a mode listens on: "tcp" or "udp". It
// decides which listeners may share a port number.
func (m Mode) Proto() string {
	if m == ModeUDP {
		return "udp"
	}
	return "tcp"
}

func (m Mode) valid() bool {
	switch m {
	case ModeTCP, ModeFTP, ModeUDP, ModeRaw:
		return true
	}
	return false
}

// Listener is one resolved listener. Sections for other modes are zero.
type Listener struct {
	Name         string
	Mode         Mode
	ListenSpec   string // listen as written, for printing
	UpstreamSpec string // upstream as written, for printing; a list joined by ", "

	// Listen has one "host:port" per port; a range arrives expanded.
	Listen []string
	// Upstreams[i] is the failover list for Listen[i], tried in order.
	Upstreams [][]string

	ConnectTimeout time.Duration // tcp, ftp, raw
	IdleTimeout    time.Duration // tcp, ftp, raw
	MaxConns       int           // tcp, ftp, raw; zero: unlimited
	PerSource      PerSource     // tcp, ftp, raw; zero: no limit per source

	// Freebind binds the listen address even while this box does not
	// have it (IP_FREEBIND): the backup of an HA pair is then already
	// listening when the virtual address moves to it.
	Freebind bool

	ProxyProtocol      int            // tcp, raw: PROXY header version sent upstream (1, 2); zero: none
	AcceptProxy        []netip.Prefix // tcp, raw: fronts trusted to send a PROXY header; nil: none
	ProxyHeaderTimeout time.Duration  // tcp, raw: wait for a front's header

	Health Health // active checks of the upstreams; zero: passive only
	FTP    FTP
	UDP    UDP
	Raw    Raw

	// TLS, when set, terminates TLS from clients (tcp, raw). Paths are
	// resolved against the config file's folder.
	TLS *certs.ServerFiles
	// UpstreamTLS, when set, originates TLS to the upstream (tcp, raw).
	UpstreamTLS *certs.ClientFiles
}

// PerSource is the per_source section: limits per client source (an
// address cut to IPv4Prefix or IPv6Prefix bits). The zero value limits
// nothing; a set section has the prefix lengths filled in.
type PerSource struct {
	MaxConns   int     // connections open at once per source; zero: unlimited
	Rate       float64 // new connections per second per source; zero: unlimited
	Burst      int     // connections at once before Rate applies; set when Rate is
	IPv4Prefix int
	IPv6Prefix int
}

// Limits reports whether ps limits anything.
func (ps PerSource) Limits() bool { return ps.MaxConns > 0 || ps.Rate > 0 }

// Health is the health section of a listener: active checks of every
// upstream, so a dead one is known before a client needs it. Failed dials
// mark an upstream down whether or not it is set.
type Health struct {
	Interval time.Duration // between checks; zero: no active checks
	Timeout  time.Duration // one check; zero: connect_timeout (udp: 1s)

	// udp only: the probe datagram's payload (empty: an empty datagram)
	// and, when ExpectReply, the start of the answer the upstream must
	// send within Timeout (empty: any answer); without it only ICMP
	// unreachable marks an upstream down.
	Send, Expect string
	ExpectReply  bool
}

// FTP is the ftp section of an ftp listener.
type FTP struct {
	DataPorts     [2]uint16     // first, last, inclusive
	PublicIP      netip.Addr    // advertised in 227/229; zero: local address of the control connection
	TrustServerIP bool          // dial the address in the server's 227 instead of the control peer's
	DataTimeout   time.Duration // an unused data port is closed after this
}

// UDP is the udp section of a udp listener.
type UDP struct {
	SessionTimeout time.Duration
	MaxSessions    int
	// UnconfirmedTimeout ends a session its upstream never answered.
	UnconfirmedTimeout time.Duration
	// MaxSessionsPerSource caps the sessions of one client address.
	MaxSessionsPerSource int
	// PerSourceRate caps the datagrams per second of one client address;
	// zero: no cap.
	PerSourceRate float64
	ReadBuffer    int // bytes
	WriteBuffer   int // bytes
}

// Raw is the raw section of a raw listener.
type Raw struct {
	Exclusive    bool          // one client at a time, the others wait in FIFO order
	QueueTimeout time.Duration // a waiting client is closed after this
	UserTimeout  time.Duration // TCP_USER_TIMEOUT; zero: the kernel's
}

// Names returns the listeners' names in file order.
func (c *Config) Names() []string {
	names := make([]string, len(c.Listeners))
	for i := range c.Listeners {
		names[i] = c.Listeners[i].Name
	}
	return names
}

// UpstreamNames returns the distinct host names among the upstreams of
// every listener (IP addresses left out), in config order.
func (c *Config) UpstreamNames() []string {
	var names []string
	for i := range c.Listeners {
		for _, list := range c.Listeners[i].Upstreams {
			for _, u := range list {
				host, _, err := net.SplitHostPort(u)
				if err != nil || slices.Contains(names, host) {
					continue
				}
				if _, err := netip.ParseAddr(host); err != nil {
					names = append(names, host)
				}
			}
		}
	}
	return names
}

// ACLNames are the names an ACL file may use: every listener's, and
// AdminACLName for the admin endpoint.
func (c *Config) ACLNames() []string { return append(c.Names(), AdminACLName) }

// Lookup returns the listener called name, or nil.
func (c *Config) Lookup(name string) *Listener {
	for i := range c.Listeners {
		if c.Listeners[i].Name == name {
			return &c.Listeners[i]
		}
	}
	return nil
}
