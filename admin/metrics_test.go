package admin

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeStats stands in for a listener package's atomic Stats; the test drives
// known traffic through it and the scrape must show exactly that.
type fakeStats struct {
	accepted, rejectedACL, rejectedMax, dialFailures atomic.Uint64
	active                                           atomic.Int64
	toUpstream, toClient                             atomic.Uint64
}

// conn records one finished connection that moved up bytes to the upstream
// and down bytes back.
func (f *fakeStats) conn(up, down uint64) {
	f.accepted.Add(1)
	f.toUpstream.Add(up)
	f.toClient.Add(down)
}

func (f *fakeStats) snapshot(name, mode string) Snapshot {
	return Snapshot{
		Listener:        name,
		Mode:            mode,
		BytesToUpstream: f.toUpstream.Load(),
		BytesToClient:   f.toClient.Load(),
		Conns: &Conns{
			Accepted:         f.accepted.Load(),
			RejectedACL:      f.rejectedACL.Load(),
			RejectedMaxConns: f.rejectedMax.Load(),
			Active:           f.active.Load(),
			DialFailures:     f.dialFailures.Load(),
		},
	}
}

const tcpFamilies = `
# HELP relay_bytes_total Payload bytes relayed, by direction (to_upstream, to_client).
# TYPE relay_bytes_total counter
relay_bytes_total{direction="to_client",listener="cms-http"} 3000
relay_bytes_total{direction="to_upstream",listener="cms-http"} 600
# HELP relay_connections_accepted_total TCP connections admitted (passed the ACL and max_conns).
# TYPE relay_connections_accepted_total counter
relay_connections_accepted_total{listener="cms-http"} 3
# HELP relay_connections_active TCP connections open now.
# TYPE relay_connections_active gauge
relay_connections_active{listener="cms-http"} 1
# HELP relay_connections_rejected_total TCP connections closed before any upstream dial, by reason (acl, per_source, proxy_header, max_conns).
# TYPE relay_connections_rejected_total counter
relay_connections_rejected_total{listener="cms-http",reason="acl"} 2
relay_connections_rejected_total{listener="cms-http",reason="max_conns"} 1
relay_connections_rejected_total{listener="cms-http",reason="per_source"} 0
relay_connections_rejected_total{listener="cms-http",reason="proxy_header"} 0
# HELP relay_upstream_dial_failures_total Upstream dials that failed.
# TYPE relay_upstream_dial_failures_total counter
relay_upstream_dial_failures_total{listener="cms-http"} 1
`

// TestScrapeCountsKnownTraffic scrapes over HTTP twice: counts are read at
// scrape time, so the second scrape shows traffic that came after the first.
func TestScrapeCountsKnownTraffic(t *testing.T) {
	defer test.CheckRoutines(t)()
	var f fakeStats
	_, url, stop := running(t, Config{Gather: func() []Snapshot { return []Snapshot{f.snapshot("cms-http", "tcp")} }})
	defer stop()
	names := []string{
		"relay_bytes_total", "relay_connections_accepted_total", "relay_connections_active",
		"relay_connections_rejected_total", "relay_upstream_dial_failures_total",
	}

	f.conn(100, 1000)
	f.conn(200, 2000)
	f.rejectedACL.Add(2)
	f.dialFailures.Add(1)
	f.active.Add(1)
	f.conn(300, 0) // still open
	f.rejectedMax.Add(1)
	if err := testutil.ScrapeAndCompare(url+"/metrics", strings.NewReader(tcpFamilies), names...); err != nil {
		t.Fatalf("first scrape: %v", err)
	}

	f.active.Add(-1)
	f.conn(4, 5)
	want := strings.NewReplacer(
		`"cms-http"} 3000`, `"cms-http"} 3005`,
		`"cms-http"} 600`, `"cms-http"} 604`,
		`relay_connections_accepted_total{listener="cms-http"} 3`, `relay_connections_accepted_total{listener="cms-http"} 4`,
		`relay_connections_active{listener="cms-http"} 1`, `relay_connections_active{listener="cms-http"} 0`,
	).Replace(tcpFamilies)
	if err := testutil.ScrapeAndCompare(url+"/metrics", strings.NewReader(want), names...); err != nil {
		t.Fatalf("second scrape: %v", err)
	}
}

// TestEveryFamily covers the UDP, FTP and raw sections, the info series, and
// that a section a listener lacks produces no series.
func TestEveryFamily(t *testing.T) {
	snaps := []Snapshot{
		{
			Listener: "rtb", Mode: "udp", BytesToUpstream: 7000, BytesToClient: 1400,
			UDP: &UDP{
				SessionsActive: 2, SessionsCreated: 5, SessionsExpired: 3,
				DatagramsToUpstream: 7, DatagramsToClient: 14, Failovers: 1,
				Dropped: map[string]uint64{"acl": 4, "session_limit": 9},
			},
		},
		{
			Listener: "cms-ftp", Mode: "ftp", BytesToUpstream: 10, BytesToClient: 20,
			Conns: &Conns{Accepted: 1},
			FTP:   &FTP{DataOpened: 6, DataFailed: 2, DataPortsInUse: 1, BouncesRefused: 3, DataTheftAttempts: 5, PassivePortsRefused: 4},
		},
		{
			Listener: "ticket-printer", Mode: "raw",
			Conns: &Conns{Accepted: 3, Active: 1},
			Raw:   &Raw{QueueLength: 1, Waits: 2, WaitTime: 1500 * time.Millisecond, QueueTimeouts: 1},
			TLS:   &TLS{Client: &Handshakes{OK: 4, Resumed: 9, Failed: map[string]uint64{"unknown_authority": 2}}},
		},
	}
	c := &collector{d: newDescs(), gather: func() []Snapshot { return snaps }}
	const want = `
# HELP relay_ftp_data_channels_failed_total FTP data channels that could not be set up or were never used.
# TYPE relay_ftp_data_channels_failed_total counter
relay_ftp_data_channels_failed_total{listener="cms-ftp"} 2
# HELP relay_ftp_data_channels_opened_total FTP data connections established and relayed.
# TYPE relay_ftp_data_channels_opened_total counter
relay_ftp_data_channels_opened_total{listener="cms-ftp"} 6
# HELP relay_ftp_data_ports_in_use Relay-owned FTP data ports open now.
# TYPE relay_ftp_data_ports_in_use gauge
relay_ftp_data_ports_in_use{listener="cms-ftp"} 1
# HELP relay_ftp_refused_total FTP PORT/EPRT bounces (port_bounce), data-port connections from a stranger (data_theft) and server data ports below 1024 (passive_low_port) refused.
# TYPE relay_ftp_refused_total counter
relay_ftp_refused_total{listener="cms-ftp",reason="data_theft"} 5
relay_ftp_refused_total{listener="cms-ftp",reason="passive_low_port"} 4
relay_ftp_refused_total{listener="cms-ftp",reason="port_bounce"} 3
# HELP relay_udp_upstream_failovers_total UDP sessions moved to another upstream of their list after theirs was reported unreachable (ICMP).
# TYPE relay_udp_upstream_failovers_total counter
relay_udp_upstream_failovers_total{listener="rtb"} 1
# HELP relay_listener_info 1 for each running listener, with its mode.
# TYPE relay_listener_info gauge
relay_listener_info{listener="cms-ftp",mode="ftp"} 1
relay_listener_info{listener="rtb",mode="udp"} 1
relay_listener_info{listener="ticket-printer",mode="raw"} 1
# HELP relay_raw_queue_length Clients waiting for an exclusive raw upstream now.
# TYPE relay_raw_queue_length gauge
relay_raw_queue_length{listener="ticket-printer"} 1
# HELP relay_raw_queue_timeouts_total Waiting clients closed after queue_timeout.
# TYPE relay_raw_queue_timeouts_total counter
relay_raw_queue_timeouts_total{listener="ticket-printer"} 1
# HELP relay_tls_handshakes_total TLS handshakes with clients (side=client) and upstreams (side=upstream), by outcome (ok, resumed, failed) and, for failed, reason.
# TYPE relay_tls_handshakes_total counter
relay_tls_handshakes_total{listener="ticket-printer",outcome="failed",reason="unknown_authority",side="client"} 2
relay_tls_handshakes_total{listener="ticket-printer",outcome="ok",reason="",side="client"} 4
relay_tls_handshakes_total{listener="ticket-printer",outcome="resumed",reason="",side="client"} 9
# HELP relay_raw_queue_wait_seconds Time clients waited for an exclusive raw upstream.
# TYPE relay_raw_queue_wait_seconds summary
relay_raw_queue_wait_seconds_sum{listener="ticket-printer"} 1.5
relay_raw_queue_wait_seconds_count{listener="ticket-printer"} 2
# HELP relay_udp_datagrams_dropped_total UDP datagrams not relayed, by reason.
# TYPE relay_udp_datagrams_dropped_total counter
relay_udp_datagrams_dropped_total{listener="rtb",reason="acl"} 4
relay_udp_datagrams_dropped_total{listener="rtb",reason="session_limit"} 9
# HELP relay_udp_datagrams_total UDP datagrams relayed, by direction (to_upstream, to_client).
# TYPE relay_udp_datagrams_total counter
relay_udp_datagrams_total{direction="to_client",listener="rtb"} 14
relay_udp_datagrams_total{direction="to_upstream",listener="rtb"} 7
# HELP relay_udp_sessions_active UDP sessions open now.
# TYPE relay_udp_sessions_active gauge
relay_udp_sessions_active{listener="rtb"} 2
# HELP relay_udp_sessions_created_total UDP sessions created.
# TYPE relay_udp_sessions_created_total counter
relay_udp_sessions_created_total{listener="rtb"} 5
# HELP relay_udp_sessions_expired_total UDP sessions ended by the idle timeout.
# TYPE relay_udp_sessions_expired_total counter
relay_udp_sessions_expired_total{listener="rtb"} 3
# HELP relay_connections_accepted_total TCP connections admitted (passed the ACL and max_conns).
# TYPE relay_connections_accepted_total counter
relay_connections_accepted_total{listener="cms-ftp"} 1
relay_connections_accepted_total{listener="ticket-printer"} 3
# HELP relay_bytes_total Payload bytes relayed, by direction (to_upstream, to_client).
# TYPE relay_bytes_total counter
relay_bytes_total{direction="to_client",listener="cms-ftp"} 20
relay_bytes_total{direction="to_client",listener="rtb"} 1400
relay_bytes_total{direction="to_client",listener="ticket-printer"} 0
relay_bytes_total{direction="to_upstream",listener="cms-ftp"} 10
relay_bytes_total{direction="to_upstream",listener="rtb"} 7000
relay_bytes_total{direction="to_upstream",listener="ticket-printer"} 0
`
	err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"relay_ftp_data_channels_failed_total", "relay_ftp_data_channels_opened_total", "relay_ftp_data_ports_in_use",
		"relay_ftp_refused_total", "relay_udp_upstream_failovers_total",
		"relay_listener_info", "relay_raw_queue_length", "relay_raw_queue_timeouts_total", "relay_raw_queue_wait_seconds", "relay_tls_handshakes_total",
		"relay_udp_datagrams_dropped_total", "relay_udp_datagrams_total", "relay_udp_sessions_active",
		"relay_udp_sessions_created_total", "relay_udp_sessions_expired_total",
		"relay_connections_accepted_total", "relay_bytes_total")
	if err != nil {
		t.Fatal(err)
	}
}

// TestDrainingTwinsAreSummed: during a reload a changed listener drains
// beside its replacement under the same name; the scrape must sum them
// instead of failing on duplicate series.
func TestDrainingTwinsAreSummed(t *testing.T) {
	snaps := []Snapshot{
		{Listener: "cms-http", Mode: "tcp", BytesToUpstream: 5, Conns: &Conns{Accepted: 10, RejectedACL: 1, Active: 2}},
		{Listener: "cms-http", Mode: "raw", BytesToUpstream: 7, Conns: &Conns{Accepted: 1, Active: 1}, Raw: &Raw{Waits: 1}},
	}
	c := &collector{d: newDescs(), gather: func() []Snapshot { return snaps }}
	const want = `
# HELP relay_connections_accepted_total TCP connections admitted (passed the ACL and max_conns).
# TYPE relay_connections_accepted_total counter
relay_connections_accepted_total{listener="cms-http"} 11
# HELP relay_connections_active TCP connections open now.
# TYPE relay_connections_active gauge
relay_connections_active{listener="cms-http"} 3
# HELP relay_bytes_total Payload bytes relayed, by direction (to_upstream, to_client).
# TYPE relay_bytes_total counter
relay_bytes_total{direction="to_client",listener="cms-http"} 0
relay_bytes_total{direction="to_upstream",listener="cms-http"} 12
# HELP relay_listener_info 1 for each running listener, with its mode.
# TYPE relay_listener_info gauge
relay_listener_info{listener="cms-http",mode="raw"} 1
relay_listener_info{listener="cms-http",mode="tcp"} 1
# HELP relay_raw_queue_wait_seconds Time clients waited for an exclusive raw upstream.
# TYPE relay_raw_queue_wait_seconds summary
relay_raw_queue_wait_seconds_sum{listener="cms-http"} 0
relay_raw_queue_wait_seconds_count{listener="cms-http"} 1
`
	err := testutil.CollectAndCompare(c, strings.NewReader(want), "relay_connections_accepted_total",
		"relay_connections_active", "relay_bytes_total", "relay_listener_info", "relay_raw_queue_wait_seconds")
	if err != nil {
		t.Fatal(err)
	}
	if snaps[0].Conns.Accepted != 10 {
		t.Error("merging changed the daemon's snapshot")
	}
}

// TestBadLabelDoesNotHideTheRest: a listener name that is not valid UTF-8
// (config rejects it, but a scrape must never panic) spoils only its own
// series.
func TestBadLabelDoesNotHideTheRest(t *testing.T) {
	s, err := New(Config{Gather: func() []Snapshot {
		return []Snapshot{
			{Listener: "bad\xff", Mode: "tcp"},
			{Listener: "good", Mode: "tcp", BytesToUpstream: 42},
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	body := httptestGet(t, s.Handler(), "/metrics")
	if !strings.Contains(body, `relay_bytes_total{direction="to_upstream",listener="good"} 42`) {
		t.Errorf("good listener's series missing:\n%s", body)
	}
}

// TestUpstreamSeries: each configured upstream has its up gauge and its
// failover counter; twins of one listener are joined by upstream, and an
// upstream only a replaced instance knew keeps its count but no gauge.
func TestUpstreamSeries(t *testing.T) {
	snaps := []Snapshot{
		{Listener: "cms-http", Mode: "tcp", State: StateServing, Upstreams: []Upstream{
			{Address: "10.0.0.5:80", Health: HealthDown, Failovers: 7},
			{Address: "cms-b.venue.lan:80", Health: HealthUp},
		}},
		Carry(Snapshot{Listener: "cms-http", Mode: "tcp", State: StateServing, Upstreams: []Upstream{
			{Address: "10.0.0.5:80", Health: HealthUp, Failovers: 2},
			{Address: "10.0.0.9:80", Health: HealthUp, Failovers: 3},
			{Address: "10.0.0.10:80", Health: HealthUp},
		}}),
	}
	c := &collector{d: newDescs(), gather: func() []Snapshot { return snaps }}
	const want = `
# HELP relay_upstream_up 1 while the upstream answers (a host name: any of its addresses), 0 while it is down.
# TYPE relay_upstream_up gauge
relay_upstream_up{listener="cms-http",upstream="10.0.0.5:80"} 0
relay_upstream_up{listener="cms-http",upstream="cms-b.venue.lan:80"} 1
# HELP relay_upstream_failovers_total Connections (udp: sessions) that went past this upstream because it was down or its dial failed.
# TYPE relay_upstream_failovers_total counter
relay_upstream_failovers_total{listener="cms-http",upstream="10.0.0.5:80"} 9
relay_upstream_failovers_total{listener="cms-http",upstream="10.0.0.9:80"} 3
relay_upstream_failovers_total{listener="cms-http",upstream="cms-b.venue.lan:80"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "relay_upstream_up", "relay_upstream_failovers_total"); err != nil {
		t.Fatal(err)
	}
}
