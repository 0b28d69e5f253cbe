// Package admin serves the relay's operations endpoint: /metrics in the
// Prometheus text format and /healthz for load balancers and systemd
// health checks. Its main type is Server.
//
// admin counts nothing itself. On each scrape it asks the daemon for one
// Snapshot per running listener (Config.Gather), which the daemon fills from
// the listeners' atomic Stats, and turns them into relay_* series on a
// registry of its own (never the global default one), beside the Go runtime
// and process collectors. Its job ends at formatting: what is counted, and
// when, is decided by forward, udpstream and ftppassive.
//
// Every relay_* series except relay_ready carries a listener label. When a
// changed listener drains beside its replacement, the two share a name and
// their values are summed. A rebound listener starts its counters from zero,
// which Prometheus's rate() and increase() treat as a counter reset.
//
//	name                                  type     extra labels  meaning
//	relay_ready                           gauge    (none)        1 when every configured listener is bound, as /healthz
//	relay_listener_info                   gauge    mode          1 per running listener; mode is tcp, ftp, udp or raw
//	relay_connections_accepted_total      counter                TCP connections admitted (passed the ACL and max_conns)
//	relay_connections_rejected_total      counter  reason        closed before any upstream dial; reason is acl or max_conns
//	relay_connections_active              gauge                  TCP connections open now
//	relay_bytes_total                     counter  direction     payload bytes relayed; direction is to_upstream or to_client
//	relay_upstream_dial_failures_total    counter                upstream TCP dials that failed, each address tried
//	relay_udp_sessions_active             gauge                  UDP sessions open now
//	relay_udp_sessions_created_total      counter                UDP sessions created
//	relay_udp_sessions_expired_total      counter                UDP sessions ended by the idle timeout
//	relay_udp_datagrams_total             counter  direction     UDP datagrams relayed; direction as for bytes
//	relay_udp_datagrams_dropped_total     counter  reason        UDP datagrams not relayed, e.g. acl, session_limit
//	relay_udp_upstream_failovers_total    counter                listen ports moved to the next upstream of their list
//	relay_ftp_data_channels_opened_total  counter                FTP data connections established and relayed
//	relay_ftp_data_channels_failed_total  counter                FTP data channels not set up or never used
//	relay_ftp_data_ports_in_use           gauge                  relay-owned FTP data ports open now
//	relay_ftp_refused_total               counter  reason        port_bounce (PORT/EPRT, RFC 2577) or data_theft (stranger on a data port)
//	relay_raw_queue_length                gauge                  clients waiting for an exclusive raw upstream
//	relay_raw_queue_wait_seconds          summary                time clients waited (_sum and _count)
//	relay_raw_queue_timeouts_total        counter                waiting clients closed after queue_timeout
//	relay_tls_handshakes_total            counter  side, outcome, reason  TLS handshakes with clients or upstreams: ok, resumed, failed (reason)
//
// Series of a part a listener does not have (UDP series on a TCP listener,
// for example) are left out, not shown as zeros. The go_* and process_*
// families are the client library's standard ones.
//
// /healthz answers 200 "ok" once Config.Ready reports true and 503 before,
// so a unit or a load balancer can wait for every listener to be bound.
package admin
