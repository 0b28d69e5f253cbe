// Package admin serves the relay's operations endpoint: /metrics in the
// Prometheus text format, /healthz for load balancers and systemd health
// checks, /status.json and the status page. Its main type is Server.
//
// admin counts nothing itself. On each request it asks the daemon for one
// Snapshot per running listener instance (Config.Gather) and for the
// daemon's own facts (Config.Relay), and formats them: relay_* series on a
// registry of its own (never the global default one) beside the Go runtime
// and process collectors, the same Snapshots as JSON, and a page that reads
// the JSON. Its job ends at formatting: what is counted, and when, is
// decided by forward, udpstream, ftppassive and acl.
//
// # Adding a counter
//
// A count travels one path, and tests fail when a step is left out:
//
//  1. The data plane adds an atomic field to its Stats (forward.Stats,
//     ftppassive.Stats, udpstream.Stats) and updates it.
//  2. The daemon copies it into the Snapshot in daemon/snapshot.go (the one
//     mapping per data plane); daemon's TestCountsReadEveryStat fails for a
//     Stats field no Snapshot field receives.
//  3. The Snapshot gets a field with a json tag in snake_case: that is its
//     /status.json name, stable once released. A new part of a listener
//     (TLS, upstream health, per-source limits) is a new pointer section
//     with omitempty, nil for listeners that lack it.
//  4. merge (merge.go) adds it up across instances of one name, and Carry
//     zeroes it if it is a gauge; TestMergeSumsEveryField fails otherwise.
//  5. collector.go gets a descriptor and emits it; TestEveryCountReachesMetrics
//     fails for a Snapshot number on no relay_* series. Add the family to
//     the table below and to README.md.
//  6. The page (page/status.js) shows it; TestPageShowsEveryField fails for
//     a json name the script never mentions, and TestStatusJSONNames pins
//     the names in testdata/status.json.
//
// # Series
//
// Every relay_* series except relay_ready and
// relay_admin_misdirected_requests_total carries a listener label. When a
// changed listener drains beside its replacement, the two share a name and
// their values are summed; the final counts of a replaced instance carry
// over to its name, so a reload is no counter reset. A listener a reload
// removed keeps its series until its last connection or session has ended;
// then every one of them goes, the ACL's too.
//
//	name                                  type     extra labels     meaning
//	relay_ready                           gauge    (none)           1 when every configured listener is bound, as /healthz
//	relay_listener_info                   gauge    mode             1 per running listener; mode is tcp, ftp, udp or raw
//	relay_connections_accepted_total      counter                   TCP connections admitted (passed the ACL and max_conns)
//	relay_connections_rejected_total      counter  reason           closed before any upstream dial; reason is acl, per_source, proxy_header or max_conns
//	relay_connections_active              gauge                     TCP connections open now
//	relay_bytes_total                     counter  direction        payload bytes relayed; direction is to_upstream or to_client
//	relay_upstream_dial_failures_total    counter                   upstream TCP dials that failed, each address tried
//	relay_connections_unreachable_total   counter                   admitted connections closed: no upstream reachable (failed or known down)
//	relay_accept_errors_total             counter                   accepts that failed (out of descriptors, most likely)
//	relay_accept_backing_off              gauge                     listen sockets backing off after a failed accept: no client taken
//	relay_udp_sessions_active             gauge                     UDP sessions open now
//	relay_udp_sessions_created_total      counter                   UDP sessions created
//	relay_udp_sessions_expired_total      counter                   UDP sessions ended by the idle timeout
//	relay_udp_sessions_evicted_total      counter                   unanswered UDP sessions ended to make room for a new client
//	relay_udp_datagrams_total             counter  direction        UDP datagrams relayed; direction as for bytes
//	relay_udp_datagrams_dropped_total     counter  reason           UDP datagrams not relayed, e.g. acl, session_limit, source_limit
//	relay_udp_sources_rejected_total      counter                   new UDP client addresses the ACL refused
//	relay_udp_upstream_failovers_total    counter                   sessions moved to another upstream after ICMP unreachable
//	relay_ftp_sessions_total              counter                   FTP control connections relayed to a server
//	relay_ftp_no_upstream_total           counter                   control connections answered 421: no server reachable
//	relay_ftp_lines_too_long_total        counter                   sessions closed for a control line over the limit
//	relay_ftp_tls_passthrough_total       counter                   sessions relayed as opaque bytes after AUTH TLS
//	relay_ftp_data_channels_opened_total  counter                   FTP data connections established and relayed
//	relay_ftp_data_channels_failed_total  counter                   FTP data channels not set up or never used
//	relay_ftp_data_ports_in_use           gauge                     relay-owned FTP data ports open now
//	relay_ftp_data_ports                  gauge                     size of the data-port pool
//	relay_ftp_data_bytes_total            counter  direction        data-connection bytes, a part of relay_bytes_total
//	relay_ftp_refused_total               counter  reason           port_bounce (PORT/EPRT, RFC 2577), data_theft (stranger on a data port), passive_low_port (227/229 port < 1024)
//	relay_raw_queue_length                gauge                     clients waiting for an exclusive raw upstream
//	relay_raw_queue_wait_seconds          summary                   time clients waited (_sum and _count)
//	relay_raw_queue_timeouts_total        counter                   waiting clients closed after queue_timeout
//	relay_raw_busy                        gauge                     exclusive raw upstreams held by a client now
//	relay_acl_decisions_total             counter  proto, decision  ACL decisions since start; decision is allow or reject
//	relay_acl_rejections_logged_total     counter  proto            rejections logged one by one (the rest were summarised)
//	relay_acl_allowed_then_refused_total  counter  proto            clients refused by a check besides the ACL: per_source,
//	                                                                proxy_header, FTP data_theft (logged within its budget)
//	relay_tls_handshakes_total            counter  side, outcome,   TLS handshakes with clients or upstreams: ok, resumed,
//	                                               reason           failed (by reason)
//	relay_upstream_up                     gauge    upstream         1 while the upstream answers, 0 while down (as configured)
//	relay_upstream_failovers_total        counter  upstream         connections (udp: sessions) that went past it: down or dial failed
//	relay_admin_misdirected_requests_total
//	                                      counter  (none)           requests refused with 421 for their Host (see Names below)
//
// Series of a part a listener does not have (UDP series on a TCP listener,
// for example) are left out, not shown as zeros. The go_* and process_*
// families are the client library's standard ones.
//
// /healthz answers 200 "ok" once Config.Ready reports true and 503 before,
// so a unit or a load balancer can wait for every listener to be bound.
//
// # Status page and /status.json
//
// GET / is a page (HTML, CSS and plain JavaScript embedded in the binary,
// nothing loaded from elsewhere) that reads /status.json every 2 s and
// updates itself in place (page/patch.js): a card per listener name and a
// row per upstream or rejection stay the same elements while they show the
// same thing, so an admin's selection, open folds and scroll survive. The
// JSON is a Status: the daemon's facts (relay), the process (uptime,
// connections, file descriptors) and one Snapshot per listener name in
// config order, with rates over about the last 10 s computed from the
// reads. Its field names are the json tags of Status and the types inside
// it, stable once released; sections a listener lacks are left out.
//
// A listener's tls section says, per side, when the last handshake
// succeeded (last_ok) and, newest first, the latest failure of each reason
// whose peer (client IP, or upstream as configured) has completed no
// handshake since (failing: reason, peer, at); forward keeps both. From
// them admin decides tls.attention (tlsattention.go), which puts the
// listener on the page's attention list: side "upstream" (TLS FAILING)
// when a handshake with an upstream failed in the last 10 minutes, for
// any reason, and that upstream has not succeeded since; else side
// "client" (CLIENT CERTS REFUSED, a softer note) when a client's
// certificate was refused in that time (bad_certificate,
// unknown_authority, expired) and that client has not succeeded since.
// Scanners' failures (not_tls, protocol, closed, timeout, and
// no_certificate from a handshake finished without one) never count.
//
// Every route is a GET: the endpoint changes nothing. Config.Allow may
// refuse a client, which then gets 403 on every route; the daemon uses the
// ACL's rules for the name admin.
//
// # Names
//
// After the ACL, the Host header decides: the endpoint answers only to IP
// literals (any address, any port), localhost, the machine's hostname
// (Config.Hostname, os.Hostname by default) and its first label, and the
// names of Config.Hosts (admin.hosts). Any other name gets 421 Misdirected
// Request on every path, /healthz and /metrics included, with a line that
// names admin.hosts, and a warning at most once a minute. This is the
// defence against DNS rebinding: a page from evil.example that re-points
// its name at the relay's address is same-origin with the endpoint in the
// browser, but still sends "Host: evil.example". It cannot send any of the
// accepted names, since their DNS is not the attacker's and an IP-literal
// origin is the address the browser connects to. 421 rather than 403: the
// client may be welcome (the ACL's 403 says otherwise); the name is wrong,
// and the fix is a config line. The default keeps working for a scraper
// that targets the box by address or by its hostname; one that uses
// another name (an alias, an FQDN the box does not call itself) needs it
// listed.
package admin
