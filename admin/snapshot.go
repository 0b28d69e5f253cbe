package admin

import (
	"maps"
	"time"
)

// Snapshot is what one listener has counted so far, read at scrape time from
// the listener's atomic Stats. Counters (uint64) only grow while the listener
// runs; gauges (int64) are current values. A nil section means the listener
// has no such part, and its series are left out rather than shown as zeros.
type Snapshot struct {
	Listener string // listener name: the value of the listener label
	Mode     string // tcp | ftp | udp | raw; shown by relay_listener_info

	// Payload bytes moved, counted as they pass, in every mode (for ftp:
	// control and data connections; for udp: datagram payloads).
	BytesToUpstream uint64 // client -> upstream
	BytesToClient   uint64 // upstream -> client

	Conns *Conns // modes that accept TCP connections: tcp, raw, ftp (control)
	UDP   *UDP   // mode udp
	FTP   *FTP   // mode ftp: data channels
	Raw   *Raw   // mode raw with exclusive access
	TLS   *TLS   // tcp and raw listeners with tls or upstream_tls
}

// TLS counts the handshakes of a listener, per side; a nil side is plain.
type TLS struct {
	Client   *Handshakes // with clients: the listener terminates TLS
	Upstream *Handshakes // with upstreams: the listener originates TLS
}

// Handshakes counts TLS handshakes by outcome.
type Handshakes struct {
	OK      uint64            // full handshakes
	Resumed uint64            // resumed a session
	Failed  map[string]uint64 // by reason (bad_certificate, unknown_authority, expired, ...)
}

// Conns counts TCP client connections.
type Conns struct {
	Accepted         uint64 // admitted: passed the ACL and max_conns
	RejectedACL      uint64 // closed because the ACL said reject
	RejectedMaxConns uint64 // closed because max_conns was reached
	Active           int64  // open now

	// DialFailures counts upstream TCP dials that failed, each address of
	// a failover list once (for ftp: to the server, and to active-mode
	// clients). A udp listener's equivalent is a session_error drop.
	DialFailures uint64
}

// UDP counts sessions and datagrams of a UDP listener.
type UDP struct {
	SessionsActive  int64
	SessionsCreated uint64
	SessionsExpired uint64 // ended by the idle timeout

	DatagramsToUpstream uint64
	DatagramsToClient   uint64

	// Failovers counts moves of a listen port to the next upstream of its
	// list after the current one was reported unreachable.
	Failovers uint64

	// Dropped counts datagrams that were not forwarded, by reason, e.g.
	// "acl", "session_limit", "send_error". Each key becomes one value of
	// the reason label; nil: nothing dropped.
	Dropped map[string]uint64
}

// FTP counts the data channels of an FTP listener.
type FTP struct {
	DataOpened     uint64 // data connections established and relayed
	DataFailed     uint64 // data channels that could not be set up or were never used
	DataPortsInUse int64  // relay-owned data ports open now

	// Refusals of the RFC 2577 kind, which an admin wants to see:
	BouncesRefused    uint64 // PORT/EPRT to another address or a port below 1024
	DataTheftAttempts uint64 // connections to a data port from a stranger
}

// Raw counts the wait queue of an exclusive raw listener.
type Raw struct {
	QueueLength   int64         // clients waiting for the upstream now
	Waits         uint64        // clients that finished waiting, served or not
	WaitTime      time.Duration // total time those clients waited
	QueueTimeouts uint64        // clients closed after queue_timeout
}

// Carry returns the part of a finished instance's snapshot that must live on
// in its successor's series: the counters, with every gauge at zero. The
// daemon adds it to the next instances of the same name (Merge), so a
// reload is not a counter reset to Prometheus.
func Carry(s Snapshot) Snapshot {
	if s.Conns != nil {
		c := *s.Conns
		c.Active = 0
		s.Conns = &c
	}
	if s.UDP != nil {
		u := *s.UDP
		u.SessionsActive = 0
		s.UDP = &u
	}
	if s.FTP != nil {
		f := *s.FTP
		f.DataPortsInUse = 0
		s.FTP = &f
	}
	if s.Raw != nil {
		r := *s.Raw
		r.QueueLength = 0
		s.Raw = &r
	}
	return s
}

// Merge adds b into a (see merge).
func Merge(a, b Snapshot) Snapshot { return merge(a, b) }

// merge adds b into a. The daemon may hold two instances under one name for
// a moment (a changed listener draining beside its replacement); Prometheus
// refuses duplicate series, so their counts are summed. Gauges sum too:
// active connections of both are open.
func merge(a, b Snapshot) Snapshot {
	a.BytesToUpstream += b.BytesToUpstream
	a.BytesToClient += b.BytesToClient
	a.Conns = mergeConns(a.Conns, b.Conns)
	a.UDP = mergeUDP(a.UDP, b.UDP)
	a.FTP = mergeFTP(a.FTP, b.FTP)
	a.Raw = mergeRaw(a.Raw, b.Raw)
	a.TLS = mergeTLS(a.TLS, b.TLS)
	return a
}

func mergeTLS(a, b *TLS) *TLS {
	if a == nil || b == nil {
		return either(a, b)
	}
	return &TLS{Client: mergeHandshakes(a.Client, b.Client), Upstream: mergeHandshakes(a.Upstream, b.Upstream)}
}

func mergeHandshakes(a, b *Handshakes) *Handshakes {
	if a == nil || b == nil {
		return either(a, b)
	}
	failed := maps.Clone(a.Failed)
	if failed == nil && len(b.Failed) > 0 {
		failed = make(map[string]uint64, len(b.Failed))
	}
	for reason, n := range b.Failed {
		failed[reason] += n
	}
	return &Handshakes{OK: a.OK + b.OK, Resumed: a.Resumed + b.Resumed, Failed: failed}
}

func mergeConns(a, b *Conns) *Conns {
	if a == nil || b == nil {
		return either(a, b)
	}
	return &Conns{
		Accepted:         a.Accepted + b.Accepted,
		RejectedACL:      a.RejectedACL + b.RejectedACL,
		RejectedMaxConns: a.RejectedMaxConns + b.RejectedMaxConns,
		Active:           a.Active + b.Active,
		DialFailures:     a.DialFailures + b.DialFailures,
	}
}

func mergeUDP(a, b *UDP) *UDP {
	if a == nil || b == nil {
		return either(a, b)
	}
	dropped := maps.Clone(a.Dropped)
	if dropped == nil && len(b.Dropped) > 0 {
		dropped = make(map[string]uint64, len(b.Dropped))
	}
	for reason, n := range b.Dropped {
		dropped[reason] += n
	}
	return &UDP{
		SessionsActive:      a.SessionsActive + b.SessionsActive,
		SessionsCreated:     a.SessionsCreated + b.SessionsCreated,
		SessionsExpired:     a.SessionsExpired + b.SessionsExpired,
		DatagramsToUpstream: a.DatagramsToUpstream + b.DatagramsToUpstream,
		DatagramsToClient:   a.DatagramsToClient + b.DatagramsToClient,
		Failovers:           a.Failovers + b.Failovers,
		Dropped:             dropped,
	}
}

func mergeFTP(a, b *FTP) *FTP {
	if a == nil || b == nil {
		return either(a, b)
	}
	return &FTP{
		DataOpened:     a.DataOpened + b.DataOpened,
		DataFailed:     a.DataFailed + b.DataFailed,
		DataPortsInUse: a.DataPortsInUse + b.DataPortsInUse,

		BouncesRefused:    a.BouncesRefused + b.BouncesRefused,
		DataTheftAttempts: a.DataTheftAttempts + b.DataTheftAttempts,
	}
}

func mergeRaw(a, b *Raw) *Raw {
	if a == nil || b == nil {
		return either(a, b)
	}
	return &Raw{
		QueueLength:   a.QueueLength + b.QueueLength,
		Waits:         a.Waits + b.Waits,
		WaitTime:      a.WaitTime + b.WaitTime,
		QueueTimeouts: a.QueueTimeouts + b.QueueTimeouts,
	}
}

// either returns whichever of a and b is set (a when both are nil).
func either[T any](a, b *T) *T {
	if a == nil {
		return b
	}
	return a
}
