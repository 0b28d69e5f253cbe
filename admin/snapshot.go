package admin

import (
	"time"
)

// Snapshot is what one listener instance has counted so far, read at scrape
// time from the listener's atomic Stats, plus the facts the page shows
// beside the counts. Counters (uint64) only grow while the listener runs;
// gauges (int64) are current values. A nil section means the listener has
// no such part: its series are left out of /metrics rather than shown as
// zeros, and its key is left out of /status.json.
//
// The json names are the documented, stable field names of /status.json;
// see the package comment for the rules a new field follows.
type Snapshot struct {
	Listener string `json:"name"` // listener name: the value of the listener label
	Mode     string `json:"mode"` // tcp | ftp | udp | raw; shown by relay_listener_info

	// State is "serving", "draining" (a reload retired it; it finishes its
	// connections) or "down" (its accept loop failed; see the log).
	State string `json:"state"`
	// Listen is the listen address as the config writes it ("0.0.0.0:21"
	// or a port range).
	Listen string `json:"listen"`
	// Upstreams lists each distinct upstream address in config order.
	Upstreams []Upstream `json:"upstreams"`
	// HealthChecks is true when the relay probes the upstreams on a timer
	// (the listener's health section). False: their health is learnt from
	// traffic alone (a failed dial, ICMP unreachable), so an upstream no
	// client has tried yet reads healthy.
	HealthChecks bool `json:"health_checks"`

	// Payload bytes moved, counted as they pass, in every mode (for ftp:
	// control and data connections; for udp: datagram payloads).
	BytesToUpstream uint64 `json:"bytes_to_upstream"` // client -> upstream
	BytesToClient   uint64 `json:"bytes_to_client"`   // upstream -> client

	Conns *Conns `json:"connections,omitempty"` // modes that accept TCP connections: tcp, raw, ftp (control)
	UDP   *UDP   `json:"udp,omitempty"`         // mode udp
	FTP   *FTP   `json:"ftp,omitempty"`         // mode ftp: sessions and data channels
	Raw   *Raw   `json:"raw,omitempty"`         // mode raw with exclusive access
	TLS   *TLS   `json:"tls,omitempty"`         // tcp and raw listeners with tls or upstream_tls

	// Rates are computed by admin for /status.json and the page from the
	// counters above; the daemon leaves it nil and /metrics does not show it
	// (Prometheus computes its own rates).
	Rates *Rates `json:"rates,omitempty"`
}

// The values of Snapshot.State.
const (
	StateServing  = "serving"
	StateDraining = "draining"
	StateDown     = "down"
)

// Upstream is one upstream address of a listener and what is known of its
// health.
type Upstream struct {
	Address string `json:"address"` // host:port as configured
	// Health is "" when nothing checks it, else "healthy" or "unhealthy"
	// (for a host name: healthy while any of its addresses is).
	Health string `json:"health,omitempty"`
	// Failovers counts connections (udp: sessions) that went past this
	// upstream because it was down or its dial failed.
	Failovers uint64 `json:"failovers"`
}

// The values of Upstream.Health.
const (
	HealthUp   = "healthy"
	HealthDown = "unhealthy"
)

// TLS counts the handshakes of a listener, per side; a nil side is plain.
type TLS struct {
	Client   *Handshakes `json:"client,omitempty"`   // with clients: the listener terminates TLS
	Upstream *Handshakes `json:"upstream,omitempty"` // with upstreams: the listener originates TLS

	// Attention is what about the handshakes needs the admin's eye (see
	// tlsAttention for the rule); nil: nothing. Computed by admin for
	// /status.json and the page, like Rates.
	Attention *TLSAttention `json:"attention,omitempty"`
}

// Handshakes counts TLS handshakes by outcome.
type Handshakes struct {
	OK      uint64            `json:"ok"`      // full handshakes
	Resumed uint64            `json:"resumed"` // resumed a session
	Failed  map[string]uint64 `json:"failed"`  // by reason (bad_certificate, unknown_authority, expired, ...)

	// LastOK is when the last handshake succeeded; nil: none since the
	// listener started.
	LastOK *time.Time `json:"last_ok,omitempty"`
	// Failing lists, newest first, the latest failure of each reason
	// whose peer has not completed a handshake since; [] when none.
	Failing []HandshakeFailure `json:"failing"`
}

// HandshakeFailure is the latest failed handshake of one reason.
type HandshakeFailure struct {
	Reason string    `json:"reason"` // as in Handshakes.Failed
	Peer   string    `json:"peer"`   // the client's IP, or the upstream as configured
	At     time.Time `json:"at"`
}

// TLSAttention is a listener's TLS trouble: Side "upstream" (the page's
// TLS FAILING) or "client" (CLIENT CERTS REFUSED), and the failure that
// says so.
type TLSAttention struct {
	Side string `json:"side"`
	HandshakeFailure
}

// Conns counts TCP client connections.
type Conns struct {
	Accepted         uint64 `json:"accepted"`           // admitted: passed the ACL and max_conns
	RejectedACL      uint64 `json:"rejected_acl"`       // closed because the ACL said reject
	RejectedMaxConns uint64 `json:"rejected_max_conns"` // closed because max_conns was reached
	// RejectedPerSource counts clients closed because their source was
	// over a per_source limit.
	RejectedPerSource uint64 `json:"rejected_per_source"`
	// RejectedProxyHeader counts clients closed for their PROXY header:
	// bad, missing or late from a trusted front, or sent by anyone else.
	RejectedProxyHeader uint64 `json:"rejected_proxy_header"`
	Active              int64  `json:"active"` // open now

	// DialFailures counts upstream TCP dials that failed, each address of
	// a failover list once (for ftp: to the server, and to active-mode
	// clients). A udp listener's equivalent is a session_error drop.
	DialFailures uint64 `json:"dial_failures"`
	// Unreachable counts accepted clients closed because no upstream could
	// be reached: every address failed, or was known down and not dialled
	// (raw: print jobs; ftp: control connections answered 421).
	Unreachable uint64 `json:"unreachable"`

	// AcceptErrors counts accepts that failed (out of descriptors, most
	// likely). AcceptBackingOff is how many listen sockets wait to accept
	// again after one (gauge): while it is above zero the listener takes no
	// client from them, and they wait in the kernel's backlog.
	AcceptErrors     uint64 `json:"accept_errors"`
	AcceptBackingOff int64  `json:"accept_backing_off"`
}

// UDP counts sessions and datagrams of a UDP listener.
type UDP struct {
	SessionsActive  int64  `json:"sessions_active"`
	SessionsCreated uint64 `json:"sessions_created"`
	SessionsExpired uint64 `json:"sessions_expired"` // ended by the idle timeout
	SessionsEvicted uint64 `json:"sessions_evicted"` // never answered, ended for a newcomer

	DatagramsToUpstream uint64 `json:"datagrams_to_upstream"`
	DatagramsToClient   uint64 `json:"datagrams_to_client"`

	// SourcesRejected counts new client addresses the ACL refused (each
	// refusal once; the datagram that asked is a Dropped["acl"]).
	SourcesRejected uint64 `json:"sources_rejected"`

	// Failovers counts moves of a listen port to the next upstream of its
	// list after the current one was reported unreachable.
	Failovers uint64 `json:"failovers"`

	// Dropped counts datagrams that were not forwarded, by reason, e.g.
	// "acl", "session_limit", "send_error". Each key becomes one value of
	// the reason label; nil: nothing dropped.
	Dropped map[string]uint64 `json:"dropped"`
}

// FTP counts the control sessions and data channels of an FTP listener.
type FTP struct {
	Sessions       uint64 `json:"sessions"`        // control connections relayed to a server
	NoUpstream     uint64 `json:"no_upstream"`     // control connections answered 421: no server reachable
	LinesTooLong   uint64 `json:"lines_too_long"`  // sessions closed for a control line over the limit
	TLSPassthrough uint64 `json:"tls_passthrough"` // sessions relayed as opaque bytes after AUTH TLS

	DataOpened     uint64 `json:"data_opened"`       // data connections established and relayed
	DataFailed     uint64 `json:"data_failed"`       // data channels that could not be set up or were never used
	DataPortsInUse int64  `json:"data_ports_in_use"` // relay-owned data ports open now
	DataPorts      int64  `json:"data_ports"`        // size of the data-port pool

	// Data bytes, a part of the Snapshot's bytes (the rest is control).
	DataBytesToUpstream uint64 `json:"data_bytes_to_upstream"`
	DataBytesToClient   uint64 `json:"data_bytes_to_client"`

	// Refusals of the RFC 2577 kind, which an admin wants to see:
	BouncesRefused    uint64 `json:"bounces_refused"`     // PORT/EPRT to another address or a port below 1024
	DataTheftAttempts uint64 `json:"data_theft_attempts"` // connections to a data port from a stranger
	// 227/229 replies naming a server data port below 1024, answered 425.
	PassivePortsRefused uint64 `json:"passive_ports_refused"`
}

// Raw counts the wait queue of an exclusive raw listener.
type Raw struct {
	QueueLength   int64         `json:"queue_length"`   // clients waiting for the upstream now
	Waits         uint64        `json:"waits"`          // clients that finished waiting, served or not
	WaitTime      time.Duration `json:"wait_ns"`        // total time those clients waited
	QueueTimeouts uint64        `json:"queue_timeouts"` // clients closed after queue_timeout

	// Printing lists the clients that hold an upstream now, one per listen
	// port at most; empty when every device is idle.
	Printing []Holder `json:"printing"`
}

// Holder is a client that holds an exclusive raw upstream.
type Holder struct {
	Client string    `json:"client"` // ip:port
	Since  time.Time `json:"since"`
}

// Rates are per-second rates over about the last 10 seconds.
type Rates struct {
	Seconds         float64 `json:"window_seconds"` // the window actually measured
	Connections     float64 `json:"connections"`    // accepted TCP connections or created UDP sessions
	BytesToUpstream float64 `json:"bytes_to_upstream"`
	BytesToClient   float64 `json:"bytes_to_client"`
}

// carryUpstreams keeps the failover counts of ups, without their health
// (nothing checks them any more).
func carryUpstreams(ups []Upstream) []Upstream {
	var out []Upstream
	for _, u := range ups {
		if u.Failovers > 0 {
			out = append(out, Upstream{Address: u.Address, Failovers: u.Failovers})
		}
	}
	return out
}

// Carry returns the part of a finished instance's snapshot that must live on
// in its successor's series: the counters, with every gauge at zero and no
// facts. The daemon adds it to the next instances of the same name (Merge),
// so a reload is not a counter reset to Prometheus.
func Carry(s Snapshot) Snapshot {
	s.State, s.Listen, s.Rates, s.HealthChecks = "", "", nil, false
	s.Upstreams = carryUpstreams(s.Upstreams)
	if s.TLS != nil {
		s.TLS = &TLS{Client: carryHandshakes(s.TLS.Client), Upstream: carryHandshakes(s.TLS.Upstream)}
	}
	if s.Conns != nil {
		c := *s.Conns
		c.Active, c.AcceptBackingOff = 0, 0
		s.Conns = &c
	}
	if s.UDP != nil {
		u := *s.UDP
		u.SessionsActive = 0
		s.UDP = &u
	}
	if s.FTP != nil {
		f := *s.FTP
		f.DataPortsInUse, f.DataPorts = 0, 0
		s.FTP = &f
	}
	if s.Raw != nil {
		r := *s.Raw
		r.QueueLength, r.Printing = 0, nil
		s.Raw = &r
	}
	return s
}

// carryHandshakes keeps the counts of h, without its recent facts: the
// successor's own handshakes say whether a peer still fails.
func carryHandshakes(h *Handshakes) *Handshakes {
	if h == nil {
		return nil
	}
	return &Handshakes{OK: h.OK, Resumed: h.Resumed, Failed: h.Failed}
}
