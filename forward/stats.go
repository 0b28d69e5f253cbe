package forward

import "sync/atomic"

// Stats are the counters of one Listener, all ports together. Every field is
// atomic: the listener writes them as things happen and the admin endpoint
// reads them at scrape time. Counters only grow; gauges go up and down.
//
// A connection taken from a listen socket is counted exactly once in
// Accepted, Rejected, RejectedPerSource, RejectedProxyHeader or Refused,
// or, on a TLS listener, as a failed handshake, with two exceptions: a
// source that is not a trusted front and sends a PROXY header only after
// it was accepted counts in Accepted and then in RejectedProxyHeader
// (firstCheck); and one that Close or Shutdown cut short during its
// handshake or its front's header wait counts in none.
type Stats struct {
	// Accepted counts connections that passed the ACL and max_conns and
	// were handed to the forward (or to the Handler).
	Accepted atomic.Uint64
	// Rejected counts connections closed because Admit (the ACL) said no.
	// No upstream was dialled for them.
	Rejected atomic.Uint64
	// RejectedPerSource counts connections closed because their source
	// was over a Config.PerSource limit. No upstream was dialled for them.
	RejectedPerSource atomic.Uint64
	// RejectedProxyHeader counts connections closed for their PROXY
	// header: missing, malformed, truncated or late from a trusted front,
	// or sent by a source that is not one. No upstream was dialled.
	RejectedProxyHeader atomic.Uint64
	// Refused counts connections closed at once because MaxConns
	// connections were open.
	Refused atomic.Uint64
	// Active is the number of accepted connections not yet finished,
	// including raw clients waiting in the queue (gauge).
	Active atomic.Int64

	// BytesIn counts bytes moved client -> upstream, per chunk as written.
	BytesIn atomic.Uint64
	// BytesOut counts bytes moved upstream -> client, per chunk as written.
	BytesOut atomic.Uint64
	// DialFailures counts upstream connection attempts that failed; with a
	// failover list, each address tried counts once.
	DialFailures atomic.Uint64
	// Unreachable counts accepted connections (raw: print jobs) closed
	// because no upstream could be reached: every address failed, or was
	// known down and not dialled. A part of Accepted, ending
	// "upstream_unreachable"; DialFailures alone misses the clients that
	// meet an outage already known, which dial nothing.
	Unreachable atomic.Uint64

	// AcceptErrors counts accepts that failed on a listen socket (out of
	// descriptors, most likely); each sends the socket into a back-off
	// (5 ms, doubling up to 1 s) while clients wait in the kernel's backlog.
	AcceptErrors atomic.Uint64
	// AcceptBackingOff is how many listen sockets are in such a back-off
	// now (gauge), from their first failed accept to the next one that
	// succeeds: the listener takes no client from them meanwhile.
	AcceptBackingOff atomic.Int64

	// Raw mode with Exclusive set:

	// QueueLength is the number of clients waiting for the upstream now
	// (gauge).
	QueueLength atomic.Int64
	// QueuedTotal counts clients that finished waiting in the queue,
	// whether they got the upstream, timed out or left.
	QueuedTotal atomic.Uint64
	// QueueWaitNanos is the time those clients waited, summed, in
	// nanoseconds; QueueWaitNanos / QueuedTotal is the mean wait.
	QueueWaitNanos atomic.Uint64
	// QueueTimeouts counts clients closed because they waited longer than
	// Raw.QueueTimeout.
	QueueTimeouts atomic.Uint64

	// TLS: Handshakes counts the handshakes with clients of a listener
	// that terminates TLS, UpstreamHandshakes those with upstreams of one
	// that originates it. A client whose handshake failed is counted
	// there, not in Accepted or Rejected; one the ACL (AdmitTLS) rejected
	// is counted in Rejected alone.
	Handshakes         Handshakes
	UpstreamHandshakes Handshakes
}
