// Package udpstream forwards UDP datagrams from a listener port or port range
// to upstream addresses, keeping one session per client so that replies find
// their way back. It is built for CAYIN RTB live streams (UDP 8100–8226): a
// listener of 127 ports, each forwarded 1:1 to the same port upstream.
//
// The main type is Relay. For every listen port it holds a table of sessions
// keyed by the client's netip.AddrPort; a session owns a socket connected to
// the upstream, so the kernel demultiplexes replies and the relay sends them
// back to the client from the port the client sent to. Sessions end after
// Config.SessionTimeout without traffic in either direction (once the relay
// drains, after a reload or an upgrade handed its sockets on: without a
// datagram from the client, see port.expire), their number is
// capped by Config.MaxSessions (and per client address by
// Config.MaxSessionsPerSource), and every datagram that is not forwarded is
// counted in Stats by reason. Each ended session writes one access-log line.
// Those caps hold across a reload: a Relay that succeeds one of the same
// name (Config.Replaces) counts the sessions still draining there against
// its own caps, and each address's PerSourceRate allowance carries over
// (held.go, which reuses limit.Config.Replaces for the per-address counts).
// Under a flood of spoofed sources the table behaves like conntrack: a
// session its upstream never answered expires after UnconfirmedTimeout and
// is the first evicted for a newcomer (conntrack.go), and new sessions are
// opened by workers of their own, off the read path, so that a flood of
// newcomers never holds up the datagrams of open sessions (setup.go).
//
// A session fails over to the port's next upstream that is up when the
// kernel reports an ICMP error on its socket: port, host or network
// unreachable, or a reject. Session sockets set IP_RECVERR / IPV6_RECVERR,
// without which Linux drops host unreachable on a connected UDP socket,
// the error a powered-off upstream on the relay's own LAN draws once ARP
// for it gives up; the error queue the option fills is read for the
// reason and emptied after an error only, never on a datagram's path
// (recverr_linux.go, internal/sockerr).
//
// On Linux the data path reads and writes in batches with recvmmsg(2) and
// sendmmsg(2) into reused buffers, with no allocation per datagram. The same
// session logic also runs over any packet network with one datagram per call
// (pion/transport's vnet in the tests, the plain net package elsewhere).
//
// A batch is 32 buffers of 64 KiB, 2 MiB: every buffer holds the largest
// UDP datagram, so none is ever cut (a datagram the kernel reports cut,
// MSG_TRUNC, is dropped and counted as Drops.Truncated, never forwarded
// short). A reader takes a batch from the pool only once its socket has
// data and hands it back when the batch is forwarded, and the pool holds
// at most maxBatches, 8 (16 MiB), in use and free together, however many
// ports and sessions draw on it: a reader that finds them all in use waits
// for one to be handed back, oldest waiter first, while the kernel queues
// its datagrams in the socket's receive buffer. The pool is the relay's
// own, or one that the relays of a process share (Config.Buffers: the
// daemon gives all its UDP listeners one). Every second the pool frees
// the batches nobody took since the second before, so an idle relay holds
// none (pool.go); a listen port's first read tries recvmmsg before it
// waits, so a relay that just started keeps a batch free for a second or
// two.
// Buffers.Use reports what the pool holds (relay_udp_receive_buffer_bytes
// on the daemon's /metrics).
//
// Nothing the relay keeps per client source outlives the source's traffic
// by more than its timeouts (TestTablesEmptyAfterManySources): a session
// leaves its port's table when it ends, a newcomer when its session opens
// or it is dropped (at most setupQueueLen+retryQueueLen wait), a source's
// count under MaxSessionsPerSource with its last session, and the
// unconfirmed queue is compacted every tick; the per-source rate is a
// limit.Table, which forgets sources by itself, and recentDrops is fixed
// in size. A Go map keeps the room of the most entries it held: a port's
// session table, which a flood may fill to MaxSessions (about 80 bytes a
// place), is moved to one of its size once it has emptied to a quarter
// (port.shrinkLocked); its newcomer table holds at most the setup queues'.
//
// Where the package's job ends: it does not parse config files, decide ACLs
// (it calls Config.Admit once per new session) or export metrics (it fills
// Stats; the admin endpoint reads it).
package udpstream
