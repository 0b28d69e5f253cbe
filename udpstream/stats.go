package udpstream

import "sync/atomic"

// Stats counts what a Relay did. Every field is updated atomically and may be
// read at any time; counters never go down (except SessionsActive). "In" is
// the direction client → upstream, "Out" is upstream → client.
type Stats struct {
	SessionsActive  atomic.Int64  // sessions open now
	SessionsCreated atomic.Uint64 // sessions opened since Listen
	SessionsExpired atomic.Uint64 // sessions ended by SessionTimeout (or UnconfirmedTimeout) without traffic
	SessionsEvicted atomic.Uint64 // unconfirmed sessions ended to make room for a new source

	DatagramsIn  atomic.Uint64 // datagrams forwarded from clients to upstreams
	BytesIn      atomic.Uint64 // payload bytes of DatagramsIn
	DatagramsOut atomic.Uint64 // datagrams forwarded from upstreams back to clients
	BytesOut     atomic.Uint64 // payload bytes of DatagramsOut

	// Rejected counts new sources that Admit refused (one per Admit call
	// that returned false; the datagram that asked is counted in Drops.ACL).
	Rejected atomic.Uint64

	// Failovers counts sessions moved to another upstream of their list
	// after theirs was reported unreachable (ICMP).
	Failovers atomic.Uint64

	Drops Drops // datagrams not forwarded, by reason
}

// Drops counts datagrams the relay received but did not forward, by reason.
// A datagram is counted in exactly one field.
type Drops struct {
	SessionLimit atomic.Uint64 // from a new source while MaxSessions sessions, all confirmed, were open
	SourceLimit  atomic.Uint64 // from a new client whose address had MaxSessionsPerSource sessions
	SourceRate   atomic.Uint64 // over its address's PerSourceRate
	SetupBacklog atomic.Uint64 // from a new source while the queue of sessions to open was full (setup.go)
	ACL          atomic.Uint64 // from a source Admit refused
	Draining     atomic.Uint64 // from a new source after Shutdown began
	SessionError atomic.Uint64 // from a new source whose upstream socket could not be opened
	UpstreamDown atomic.Uint64 // from a new source while every upstream of its port was down
	Truncated    atomic.Uint64 // larger than the receive buffer (cannot happen with real sockets)
	SendError    atomic.Uint64 // the send failed (either direction), e.g. no route or buffer space

	// Unreachable counts ICMP "port unreachable" reports (ECONNREFUSED) on a
	// session's upstream socket. Each stands for at least one datagram the
	// upstream did not take; the kernel does not say how many.
	Unreachable atomic.Uint64
}

// DropReasons returns the drop counters by the reason names used in logs and
// metrics, so that an exporter does not have to list the fields itself.
func (d *Drops) DropReasons() map[string]uint64 {
	return map[string]uint64{
		"session_limit":        d.SessionLimit.Load(),
		"source_limit":         d.SourceLimit.Load(),
		"source_rate":          d.SourceRate.Load(),
		"setup_backlog":        d.SetupBacklog.Load(),
		"acl":                  d.ACL.Load(),
		"draining":             d.Draining.Load(),
		"session_error":        d.SessionError.Load(),
		"upstream_down":        d.UpstreamDown.Load(),
		"truncated":            d.Truncated.Load(),
		"send_error":           d.SendError.Load(),
		"upstream_unreachable": d.Unreachable.Load(),
	}
}
