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
	ready, info *prometheus.Desc

	accepted, rejected, active, bytes, dialFailures *prometheus.Desc

	udpActive, udpCreated, udpExpired, udpDatagrams, udpDropped, udpFailovers *prometheus.Desc

	ftpOpened, ftpFailed, ftpPortsInUse, ftpRefused *prometheus.Desc

	rawQueueLength, rawQueueWait, rawQueueTimeouts *prometheus.Desc

	tlsHandshakes *prometheus.Desc
}

func newDescs() descs {
	l := []string{"listener"}
	d := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append(slices.Clone(l), extra...), nil)
	}
	return descs{
		ready: prometheus.NewDesc("relay_ready", "1 when every configured listener is bound, else 0 (as /healthz).", nil, nil),
		info:  d("relay_listener_info", "1 for each running listener, with its mode.", "mode"),

		accepted:     d("relay_connections_accepted_total", "TCP connections admitted (passed the ACL and max_conns)."),
		rejected:     d("relay_connections_rejected_total", "TCP connections closed before any upstream dial, by reason (acl, max_conns).", "reason"),
		active:       d("relay_connections_active", "TCP connections open now."),
		bytes:        d("relay_bytes_total", "Payload bytes relayed, by direction (to_upstream, to_client).", "direction"),
		dialFailures: d("relay_upstream_dial_failures_total", "Upstream dials that failed."),

		udpActive:    d("relay_udp_sessions_active", "UDP sessions open now."),
		udpCreated:   d("relay_udp_sessions_created_total", "UDP sessions created."),
		udpExpired:   d("relay_udp_sessions_expired_total", "UDP sessions ended by the idle timeout."),
		udpDatagrams: d("relay_udp_datagrams_total", "UDP datagrams relayed, by direction (to_upstream, to_client).", "direction"),
		udpDropped:   d("relay_udp_datagrams_dropped_total", "UDP datagrams not relayed, by reason.", "reason"),
		udpFailovers: d("relay_udp_upstream_failovers_total", "UDP listen ports moved to the next upstream of their list."),

		ftpOpened:     d("relay_ftp_data_channels_opened_total", "FTP data connections established and relayed."),
		ftpFailed:     d("relay_ftp_data_channels_failed_total", "FTP data channels that could not be set up or were never used."),
		ftpPortsInUse: d("relay_ftp_data_ports_in_use", "Relay-owned FTP data ports open now."),
		ftpRefused:    d("relay_ftp_refused_total", "FTP PORT/EPRT bounces (port_bounce) and data-port connections from a stranger (data_theft) refused.", "reason"),

		rawQueueLength:   d("relay_raw_queue_length", "Clients waiting for an exclusive raw upstream now."),
		rawQueueWait:     d("relay_raw_queue_wait_seconds", "Time clients waited for an exclusive raw upstream."),
		rawQueueTimeouts: d("relay_raw_queue_timeouts_total", "Waiting clients closed after queue_timeout."),

		tlsHandshakes: d("relay_tls_handshakes_total", "TLS handshakes with clients (side=client) and upstreams (side=upstream), by outcome (ok, resumed, failed) and, for failed, reason.", "side", "outcome", "reason"),
	}
}

// collector turns the daemon's snapshots into relay_* series on each scrape.
// It holds no counters of its own: the listeners' atomic Stats are the only
// truth, so nothing can drift between the two.
type collector struct {
	d      descs
	gather func() []Snapshot // nil: no listener series
	ready  func() bool       // nil: always ready
}

var _ prometheus.Collector = (*collector)(nil)

// Describe sends every family, so the registry can check for clashes with
// the Go and process collectors once, at registration.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	d := c.d
	for _, desc := range []*prometheus.Desc{
		d.ready, d.info,
		d.accepted, d.rejected, d.active, d.bytes, d.dialFailures,
		d.udpActive, d.udpCreated, d.udpExpired, d.udpDatagrams, d.udpDropped, d.udpFailovers,
		d.ftpOpened, d.ftpFailed, d.ftpPortsInUse, d.ftpRefused,
		d.rawQueueLength, d.rawQueueWait, d.rawQueueTimeouts,
		d.tlsHandshakes,
	} {
		ch <- desc
	}
}

// Collect reads the snapshots once and emits their series.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	e := emitter{ch: ch}
	ready := c.ready == nil || c.ready()
	e.gauge(c.d.ready, int64(boolValue(ready)))
	if c.gather == nil {
		return
	}
	for _, s := range mergeByName(c.gather()) {
		c.collectListener(e, s)
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
		e.gauge(d.active, n.Active, name)
		e.counter(d.dialFailures, n.DialFailures, name)
	}
	if u := s.UDP; u != nil {
		e.gauge(d.udpActive, u.SessionsActive, name)
		e.counter(d.udpCreated, u.SessionsCreated, name)
		e.counter(d.udpExpired, u.SessionsExpired, name)
		e.counter(d.udpDatagrams, u.DatagramsToUpstream, name, toUpstream)
		e.counter(d.udpDatagrams, u.DatagramsToClient, name, toClient)
		e.counter(d.udpFailovers, u.Failovers, name)
		for reason, n := range u.Dropped {
			e.counter(d.udpDropped, n, name, reason)
		}
	}
	if f := s.FTP; f != nil {
		e.counter(d.ftpOpened, f.DataOpened, name)
		e.counter(d.ftpFailed, f.DataFailed, name)
		e.gauge(d.ftpPortsInUse, f.DataPortsInUse, name)
		e.counter(d.ftpRefused, f.BouncesRefused, name, "port_bounce")
		e.counter(d.ftpRefused, f.DataTheftAttempts, name, "data_theft")
	}
	if r := s.Raw; r != nil {
		e.gauge(d.rawQueueLength, r.QueueLength, name)
		e.summary(d.rawQueueWait, r.Waits, r.WaitTime.Seconds(), name)
		e.counter(d.rawQueueTimeouts, r.QueueTimeouts, name)
	}
	if t := s.TLS; t != nil {
		c.collectHandshakes(e, t.Client, name, "client")
		c.collectHandshakes(e, t.Upstream, name, "upstream")
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
