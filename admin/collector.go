package admin

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// Label values of the direction label.
const (
	toUpstream = "to_upstream"
	toClient   = "to_client"
)

// descs holds one descriptor per relay_* family; the table in the package
// comment lists the same names.
type descs struct {
	all []*prometheus.Desc // every family below, for Describe

	ready, info *prometheus.Desc

	accepted, rejected, active, bytes, dialFailures *prometheus.Desc
	acceptErrors, acceptBackingOff, unreachable     *prometheus.Desc

	udpActive, udpCreated, udpExpired, udpEvicted, udpDatagrams, udpDropped, udpFailovers, udpSourcesRejected *prometheus.Desc

	ftpSessions, ftpNoUpstream, ftpLinesTooLong, ftpTLS                     *prometheus.Desc
	ftpOpened, ftpFailed, ftpPortsInUse, ftpPorts, ftpDataBytes, ftpRefused *prometheus.Desc

	rawQueueLength, rawQueueWait, rawQueueTimeouts, rawBusy *prometheus.Desc

	aclDecisions, aclLogged, aclRefused *prometheus.Desc

	tlsHandshakes *prometheus.Desc

	upstreamUp, upstreamFailovers *prometheus.Desc
}

func newDescs() descs {
	var all []*prometheus.Desc
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		d := prometheus.NewDesc(name, help, labels, nil)
		all = append(all, d)
		return d
	}
	l := func(name, help string, extra ...string) *prometheus.Desc {
		return desc(name, help, append([]string{"listener"}, extra...)...)
	}
	d := descs{
		ready: desc("relay_ready", "1 when every configured listener is bound, else 0 (as /healthz)."),
		info:  l("relay_listener_info", "1 for each running listener, with its mode.", "mode"),

		accepted:     l("relay_connections_accepted_total", "TCP connections admitted (passed the ACL and max_conns)."),
		rejected:     l("relay_connections_rejected_total", "TCP connections closed before any upstream dial, by reason (acl, per_source, proxy_header, max_conns).", "reason"),
		active:       l("relay_connections_active", "TCP connections open now."),
		bytes:        l("relay_bytes_total", "Payload bytes relayed, by direction (to_upstream, to_client).", "direction"),
		dialFailures: l("relay_upstream_dial_failures_total", "Upstream dials that failed."),
		unreachable:  l("relay_connections_unreachable_total", "TCP connections admitted and closed because no upstream could be reached (every address failed or was known down)."),

		acceptErrors:     l("relay_accept_errors_total", "Accepts that failed on a listen socket (out of descriptors, most likely)."),
		acceptBackingOff: l("relay_accept_backing_off", "Listen sockets waiting to accept again after a failed accept; they take no client meanwhile."),

		udpActive:          l("relay_udp_sessions_active", "UDP sessions open now."),
		udpCreated:         l("relay_udp_sessions_created_total", "UDP sessions created."),
		udpExpired:         l("relay_udp_sessions_expired_total", "UDP sessions ended by the idle timeout."),
		udpEvicted:         l("relay_udp_sessions_evicted_total", "UDP sessions never answered by their upstream, ended to make room for a new client."),
		udpDatagrams:       l("relay_udp_datagrams_total", "UDP datagrams relayed, by direction (to_upstream, to_client).", "direction"),
		udpDropped:         l("relay_udp_datagrams_dropped_total", "UDP datagrams not relayed, by reason.", "reason"),
		udpFailovers:       l("relay_udp_upstream_failovers_total", "UDP sessions moved to another upstream of their list after theirs was reported unreachable (ICMP)."),
		udpSourcesRejected: l("relay_udp_sources_rejected_total", "New UDP client addresses the ACL refused."),

		ftpSessions:     l("relay_ftp_sessions_total", "FTP control connections relayed to a server."),
		ftpNoUpstream:   l("relay_ftp_no_upstream_total", "FTP control connections answered 421 because no server could be reached."),
		ftpLinesTooLong: l("relay_ftp_lines_too_long_total", "FTP sessions closed for a control line over the length limit."),
		ftpTLS:          l("relay_ftp_tls_passthrough_total", "FTP sessions relayed as opaque bytes after AUTH TLS."),
		ftpOpened:       l("relay_ftp_data_channels_opened_total", "FTP data connections established and relayed."),
		ftpFailed:       l("relay_ftp_data_channels_failed_total", "FTP data channels that could not be set up or were never used."),
		ftpPortsInUse:   l("relay_ftp_data_ports_in_use", "Relay-owned FTP data ports open now."),
		ftpPorts:        l("relay_ftp_data_ports", "Size of the FTP data-port pool."),
		ftpDataBytes:    l("relay_ftp_data_bytes_total", "FTP data-connection bytes (part of relay_bytes_total), by direction.", "direction"),
		ftpRefused:      l("relay_ftp_refused_total", "FTP PORT/EPRT bounces (port_bounce), data-port connections from a stranger (data_theft) and server data ports below 1024 (passive_low_port) refused.", "reason"),

		rawQueueLength:   l("relay_raw_queue_length", "Clients waiting for an exclusive raw upstream now."),
		rawQueueWait:     l("relay_raw_queue_wait_seconds", "Time clients waited for an exclusive raw upstream."),
		rawQueueTimeouts: l("relay_raw_queue_timeouts_total", "Waiting clients closed after queue_timeout."),
		rawBusy:          l("relay_raw_busy", "Exclusive raw upstreams held by a client now."),

		aclDecisions: l("relay_acl_decisions_total", "ACL decisions since start, by protocol and decision (allow, reject).", "proto", "decision"),
		aclLogged:    l("relay_acl_rejections_logged_total", "ACL rejections logged one by one; the rest were summarised.", "proto"),
		aclRefused:   l("relay_acl_allowed_then_refused_total", "Clients a check besides the ACL refused, logged within its budget: per_source (after the ACL allowed them), proxy_header, FTP data_theft.", "proto"),

		upstreamUp:        l("relay_upstream_up", "1 while the upstream answers (a host name: any of its addresses), 0 while it is down.", "upstream"),
		upstreamFailovers: l("relay_upstream_failovers_total", "Connections (udp: sessions) that went past this upstream because it was down or its dial failed.", "upstream"),

		tlsHandshakes: l("relay_tls_handshakes_total", "TLS handshakes with clients (side=client) and upstreams (side=upstream), by outcome (ok, resumed, failed) and, for failed, reason.", "side", "outcome", "reason"),
	}
	d.all = all
	return d
}

// collector turns the daemon's snapshots into relay_* series on each scrape.
// It holds no counters of its own: the listeners' atomic Stats are the only
// truth, so nothing can drift between the two.
type collector struct {
	d      descs
	gather func() []Snapshot // nil: no listener series
	relay  func() Relay      // nil: no ACL series
	ready  func() bool       // nil: always ready
}

var _ prometheus.Collector = (*collector)(nil)

// Describe sends every family, so the registry can check for clashes with
// the Go and process collectors once, at registration.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, desc := range c.d.all {
		ch <- desc
	}
}

// Collect reads the snapshots once and emits their series.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	e := emitter{ch: ch}
	ready := c.ready == nil || c.ready()
	e.gauge(c.d.ready, int64(boolValue(ready)))
	if c.gather != nil {
		for _, s := range mergeByName(c.gather()) {
			c.collectListener(e, s)
		}
	}
	if c.relay != nil {
		if acl := c.relay().ACL; acl != nil {
			for _, g := range acl.Decisions {
				e.counter(c.d.aclDecisions, g.Allowed, g.Listener, g.Proto, "allow")
				e.counter(c.d.aclDecisions, g.Rejected, g.Listener, g.Proto, "reject")
				e.counter(c.d.aclLogged, g.Logged, g.Listener, g.Proto)
				e.counter(c.d.aclRefused, g.Refused, g.Listener, g.Proto)
			}
		}
	}
}

// collectListener emits the series of one (merged) listener.
func (c *collector) collectListener(e emitter, s merged) {
	d, name := c.d, s.Listener
	for _, mode := range s.modes {
		e.gauge(d.info, 1, name, mode)
	}
	e.counter(d.bytes, s.BytesToUpstream, name, toUpstream)
	e.counter(d.bytes, s.BytesToClient, name, toClient)
	if n := s.Conns; n != nil {
		e.counter(d.accepted, n.Accepted, name)
		e.counter(d.rejected, n.RejectedACL, name, "acl")
		e.counter(d.rejected, n.RejectedMaxConns, name, "max_conns")
		e.counter(d.rejected, n.RejectedPerSource, name, "per_source")
		e.counter(d.rejected, n.RejectedProxyHeader, name, "proxy_header")
		e.gauge(d.active, n.Active, name)
		e.counter(d.dialFailures, n.DialFailures, name)
		e.counter(d.unreachable, n.Unreachable, name)
		e.counter(d.acceptErrors, n.AcceptErrors, name)
		e.gauge(d.acceptBackingOff, n.AcceptBackingOff, name)
	}
	if u := s.UDP; u != nil {
		c.collectUDP(e, name, u)
	}
	if f := s.FTP; f != nil {
		c.collectFTP(e, name, f)
	}
	if r := s.Raw; r != nil {
		e.gauge(d.rawQueueLength, r.QueueLength, name)
		e.summary(d.rawQueueWait, r.Waits, r.WaitTime.Seconds(), name)
		e.counter(d.rawQueueTimeouts, r.QueueTimeouts, name)
		e.gauge(d.rawBusy, int64(len(r.Printing)), name)
	}
	if t := s.TLS; t != nil {
		c.collectHandshakes(e, t.Client, name, "client")
		c.collectHandshakes(e, t.Upstream, name, "upstream")
	}
	c.collectUpstreams(e, name, s.Upstreams)
}

// collectUpstreams emits the health of the upstreams something checks, and
// the failover counts of those and of any that counted some.
func (c *collector) collectUpstreams(e emitter, name string, ups []Upstream) {
	for _, u := range ups {
		if u.Health != "" {
			e.gauge(c.d.upstreamUp, int64(boolValue(u.Health == HealthUp)), name, u.Address)
		}
		if u.Health != "" || u.Failovers > 0 {
			e.counter(c.d.upstreamFailovers, u.Failovers, name, u.Address)
		}
	}
}

func (c *collector) collectHandshakes(e emitter, h *Handshakes, name, side string) {
	if h == nil {
		return
	}
	e.counter(c.d.tlsHandshakes, h.OK, name, side, "ok", "")
	e.counter(c.d.tlsHandshakes, h.Resumed, name, side, "resumed", "")
	for reason, n := range h.Failed {
		e.counter(c.d.tlsHandshakes, n, name, side, "failed", reason)
	}
}

func (c *collector) collectUDP(e emitter, name string, u *UDP) {
	d := c.d
	e.gauge(d.udpActive, u.SessionsActive, name)
	e.counter(d.udpCreated, u.SessionsCreated, name)
	e.counter(d.udpExpired, u.SessionsExpired, name)
	e.counter(d.udpEvicted, u.SessionsEvicted, name)
	e.counter(d.udpDatagrams, u.DatagramsToUpstream, name, toUpstream)
	e.counter(d.udpDatagrams, u.DatagramsToClient, name, toClient)
	e.counter(d.udpSourcesRejected, u.SourcesRejected, name)
	e.counter(d.udpFailovers, u.Failovers, name)
	for reason, n := range u.Dropped {
		e.counter(d.udpDropped, n, name, reason)
	}
}

func (c *collector) collectFTP(e emitter, name string, f *FTP) {
	d := c.d
	e.counter(d.ftpSessions, f.Sessions, name)
	e.counter(d.ftpNoUpstream, f.NoUpstream, name)
	e.counter(d.ftpLinesTooLong, f.LinesTooLong, name)
	e.counter(d.ftpTLS, f.TLSPassthrough, name)
	e.counter(d.ftpOpened, f.DataOpened, name)
	e.counter(d.ftpFailed, f.DataFailed, name)
	e.gauge(d.ftpPortsInUse, f.DataPortsInUse, name)
	e.gauge(d.ftpPorts, f.DataPorts, name)
	e.counter(d.ftpDataBytes, f.DataBytesToUpstream, name, toUpstream)
	e.counter(d.ftpDataBytes, f.DataBytesToClient, name, toClient)
	e.counter(d.ftpRefused, f.BouncesRefused, name, "port_bounce")
	e.counter(d.ftpRefused, f.DataTheftAttempts, name, "data_theft")
	e.counter(d.ftpRefused, f.PassivePortsRefused, name, "passive_low_port")
}

// merged is a Snapshot summed over every instance of one listener name, with
// the modes they run in.
type merged struct {
	Snapshot
	modes []string
}

// mergeByName sums snapshots that share a listener name, keeping the order
// in which names first appear.
func mergeByName(snaps []Snapshot) []merged {
	out := make([]merged, 0, len(snaps))
	index := make(map[string]int, len(snaps))
	for _, s := range snaps {
		i, seen := index[s.Listener]
		if !seen {
			index[s.Listener] = len(out)
			out = append(out, merged{Snapshot: s, modes: []string{s.Mode}})
			continue
		}
		m := &out[i]
		m.Snapshot = merge(m.Snapshot, s)
		if !slices.Contains(m.modes, s.Mode) {
			m.modes = append(m.modes, s.Mode)
		}
	}
	return out
}

// emitter builds const metrics. Label values come from the config (listener
// names are validated there), but an invalid one still must not panic a
// scrape: it becomes an invalid metric, which the registry reports as an
// error for that series alone.
type emitter struct {
	ch chan<- prometheus.Metric
}

func (e emitter) counter(desc *prometheus.Desc, v uint64, labels ...string) {
	m, err := prometheus.NewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	e.send(desc, m, err)
}

func (e emitter) gauge(desc *prometheus.Desc, v int64, labels ...string) {
	m, err := prometheus.NewConstMetric(desc, prometheus.GaugeValue, float64(v), labels...)
	e.send(desc, m, err)
}

func (e emitter) summary(desc *prometheus.Desc, count uint64, sum float64, labels ...string) {
	m, err := prometheus.NewConstSummary(desc, count, sum, nil, labels...)
	e.send(desc, m, err)
}

func (e emitter) send(desc *prometheus.Desc, m prometheus.Metric, err error) {
	if err != nil {
		m = prometheus.NewInvalidMetric(desc, err)
	}
	e.ch <- m
}

func boolValue(b bool) int {
	if b {
		return 1
	}
	return 0
}
