package daemon

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// reloadCounts are the daemon's own counters, exported by reloadCollector.
type reloadCounts struct {
	ok, failed atomic.Uint64
	// lastOK is when the config in force was applied (start or the last
	// successful reload), in Unix nanoseconds.
	lastOK atomic.Int64
}

// reloaded counts one reload by its outcome.
func (c *reloadCounts) reloaded(err error) {
	if err != nil {
		c.failed.Add(1)
		return
	}
	c.ok.Add(1)
	c.lastOK.Store(time.Now().UnixNano())
}

// reloadCollector exports the reload counters and the connections that
// retired (or, in a shutdown, all) listeners still serve.
type reloadCollector struct {
	d                     *Daemon
	reloads, last, drains *prometheus.Desc
}

var _ prometheus.Collector = (*reloadCollector)(nil)

func newReloadCollector(d *Daemon) *reloadCollector {
	return &reloadCollector{
		d: d,
		reloads: prometheus.NewDesc("relay_reloads_total",
			"Config reloads, by result (success, failure: nothing changed).", []string{"result"}, nil),
		last: prometheus.NewDesc("relay_last_reload_success_timestamp_seconds",
			"When the config in force was applied (start or the last successful reload), Unix time.", nil, nil),
		drains: prometheus.NewDesc("relay_draining_connections",
			"Connections and UDP sessions still open on listeners that stopped accepting (retired by a reload, or all during a shutdown).",
			[]string{"listener"}, nil),
	}
}

func (c *reloadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.reloads
	ch <- c.last
	ch <- c.drains
}

func (c *reloadCollector) Collect(ch chan<- prometheus.Metric) {
	n := &c.d.counts
	ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(n.ok.Load()), "success")
	ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(n.failed.Load()), "failure")
	ch <- prometheus.MustNewConstMetric(c.last, prometheus.GaugeValue, float64(n.lastOK.Load())/1e9)
	for name, open := range c.d.drainingConns() {
		m, err := prometheus.NewConstMetric(c.drains, prometheus.GaugeValue, float64(open), name)
		if err != nil {
			m = prometheus.NewInvalidMetric(c.drains, err)
		}
		ch <- m
	}
}

// drainingConns returns, per listener name in force or draining, the
// connections and sessions open on its draining instances.
func (d *Daemon) drainingConns() map[string]int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]int64, len(d.running)+len(d.draining))
	for name := range d.running {
		out[name] += 0
	}
	for in := range d.draining {
		out[in.spec.Name] += in.open()
	}
	return out
}

// Open counts the connections and UDP sessions still open on every
// listener, serving or draining (what a hard stop would cut).
func (d *Daemon) Open() int64 {
	d.mu.Lock()
	all := make([]*instance, 0, len(d.running)+len(d.draining))
	for _, in := range d.running {
		all = append(all, in)
	}
	for in := range d.draining {
		all = append(all, in)
	}
	d.mu.Unlock()
	var n int64
	for _, in := range all {
		n += in.open()
	}
	return n
}

// open is how many connections (TCP, raw, FTP control) or UDP sessions
// the instance has open now.
func (in *instance) open() int64 {
	s := in.snapshot()
	switch {
	case s.Conns != nil:
		return s.Conns.Active
	case s.UDP != nil:
		return s.UDP.SessionsActive
	}
	return 0
}
