package daemon

import (
	"github.com/edgerelay/relay/udpstream"
	"github.com/prometheus/client_golang/prometheus"
)

// bufferCollector exports what the receive buffers all udp listeners share
// (Daemon.udpBufs) hold: the one memory of the UDP path that bursts on
// every port can fill, up to its cap, and that an idle relay gives back.
type bufferCollector struct {
	bufs         *udpstream.Buffers
	bytes, limit *prometheus.Desc
}

var _ prometheus.Collector = (*bufferCollector)(nil)

func newBufferCollector(bufs *udpstream.Buffers) *bufferCollector {
	return &bufferCollector{
		bufs: bufs,
		bytes: prometheus.NewDesc("relay_udp_receive_buffer_bytes",
			"Receive buffers of the udp listeners, by state: in_use (read and not yet forwarded), free (kept for the next reads; freed after 1 to 2 s unused).",
			[]string{"state"}, nil),
		limit: prometheus.NewDesc("relay_udp_receive_buffer_limit_bytes",
			"The cap on relay_udp_receive_buffer_bytes, in use and free together, for every udp listener of the process.", nil, nil),
	}
}

func (c *bufferCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.bytes
	ch <- c.limit
}

func (c *bufferCollector) Collect(ch chan<- prometheus.Metric) {
	u := c.bufs.Use()
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(u.InUse), "in_use")
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(u.Free), "free")
	ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(u.Limit))
}
