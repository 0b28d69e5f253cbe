package daemon

import (
	"slices"
	"time"

	"github.com/edgerelay/relay/admin"
	"github.com/edgerelay/relay/config"
	"github.com/edgerelay/relay/forward"
	"github.com/edgerelay/relay/ftppassive"
	"github.com/edgerelay/relay/udpstream"
	"github.com/edgerelay/relay/upstream"
)

// This file is the one path from each data plane's counters to the admin
// endpoint: build.go gives every instance a snapshot func made of facts()
// and one of the …Counts functions below. /metrics, /status.json and the
// status page all read what they return. TestCountsReadEveryStat fails when
// a field of a Stats type is read by none of them.

// facts is what the config says about a listener, for the page.
func facts(spec config.Listener) admin.Snapshot {
	s := admin.Snapshot{
		Listener: spec.Name,
		Mode:     string(spec.Mode),
		State:    admin.StateServing,
		Listen:   spec.ListenSpec,
		// An upstream Set learns from traffic in any case; a health
		// section adds the timer.
		HealthChecks: spec.Health.Interval > 0,
	}
	var seen []string
	for _, list := range spec.Upstreams {
		for _, addr := range list {
			if !slices.Contains(seen, addr) {
				seen = append(seen, addr)
				s.Upstreams = append(s.Upstreams, admin.Upstream{Address: addr})
			}
		}
	}
	return s
}

// upstreamCounts copies the health and failover counts of a listener's
// upstream Set onto the addresses facts listed.
func upstreamCounts(s *admin.Snapshot, ups *upstream.Set) {
	for _, st := range ups.Snapshot() {
		i := slices.IndexFunc(s.Upstreams, func(u admin.Upstream) bool { return u.Address == st.Upstream })
		if i < 0 {
			s.Upstreams = append(s.Upstreams, admin.Upstream{Address: st.Upstream})
			i = len(s.Upstreams) - 1
		}
		s.Upstreams[i].Health, s.Upstreams[i].Failovers = admin.HealthDown, st.Failovers
		if st.Up {
			s.Upstreams[i].Health = admin.HealthUp
		}
	}
}

// forwardCounts copies a tcp or raw listener's counters. spec says which
// parts it has: an exclusive raw queue, TLS on either side.
func forwardCounts(s *admin.Snapshot, st *forward.Stats, spec config.Listener) {
	s.BytesToUpstream, s.BytesToClient = st.BytesIn.Load(), st.BytesOut.Load()
	s.Conns = conns(st, st.DialFailures.Load())
	s.TLS = tlsCounts(spec, st)
	raw := spec.Mode == config.ModeRaw && spec.Raw.Exclusive
	if raw {
		s.Raw = &admin.Raw{
			QueueLength:   st.QueueLength.Load(),
			Waits:         st.QueuedTotal.Load(),
			WaitTime:      time.Duration(st.QueueWaitNanos.Load()),
			QueueTimeouts: st.QueueTimeouts.Load(),
		}
	}
}

// rawHolders adds who holds each device of an exclusive raw listener now.
func rawHolders(s *admin.Snapshot, holders []forward.Holder) {
	if s.Raw == nil {
		return
	}
	for _, h := range holders {
		s.Raw.Printing = append(s.Raw.Printing, admin.Holder{Client: h.Client.String(), Since: h.Since})
	}
}

// tlsCounts reads the handshake counters of the sides that use TLS.
func tlsCounts(spec config.Listener, st *forward.Stats) *admin.TLS {
	if spec.TLS == nil && spec.UpstreamTLS == nil {
		return nil
	}
	t := &admin.TLS{}
	if spec.TLS != nil {
		t.Client = handshakes(&st.Handshakes)
	}
	if spec.UpstreamTLS != nil {
		t.Upstream = handshakes(&st.UpstreamHandshakes)
	}
	return t
}

func handshakes(h *forward.Handshakes) *admin.Handshakes {
	out := &admin.Handshakes{OK: h.OK.Load(), Resumed: h.Resumed.Load(), Failed: h.Failed()}
	lastOK, failing := h.Recent()
	if !lastOK.IsZero() {
		out.LastOK = &lastOK
	}
	for _, f := range failing {
		out.Failing = append(out.Failing, admin.HandshakeFailure{Reason: f.Reason, Peer: f.Peer, At: f.At})
	}
	return out
}

// ftpCounts copies an ftp listener's counters. Its control listener's
// Stats are forward's, without a raw queue.
func ftpCounts(s *admin.Snapshot, st *ftppassive.Stats) {
	s.BytesToUpstream = st.ControlBytesToUpstream.Load() + st.DataBytesToUpstream.Load()
	s.BytesToClient = st.ControlBytesToClient.Load() + st.DataBytesToClient.Load()
	s.Conns = conns(st.Control, st.DialFailures.Load())
	if s.Conns != nil {
		// The control listener's Handler dials the server itself, so
		// forward never counts its clients unreachable: the 421s are.
		s.Conns.Unreachable = st.UpstreamFailed.Load()
	}
	if s.FTP == nil {
		s.FTP = new(admin.FTP)
	}
	f := s.FTP
	f.Sessions = st.Sessions.Load()
	f.NoUpstream = st.UpstreamFailed.Load()
	f.LinesTooLong = st.LinesTooLong.Load()
	f.TLSPassthrough = st.Opaque.Load()
	f.DataOpened = st.DataOpened.Load()
	f.DataFailed = st.DataFailed.Load()
	f.DataPortsInUse = st.DataPortsInUse.Load()
	f.DataBytesToUpstream = st.DataBytesToUpstream.Load()
	f.DataBytesToClient = st.DataBytesToClient.Load()
	f.BouncesRefused = st.BouncesRefused.Load()
	f.DataTheftAttempts = st.DataTheftAttempts.Load()
	f.PassivePortsRefused = st.PassivePortsRefused.Load()
}

// udpCounts copies a udp listener's counters.
func udpCounts(s *admin.Snapshot, st *udpstream.Stats) {
	s.BytesToUpstream, s.BytesToClient = st.BytesIn.Load(), st.BytesOut.Load()
	s.UDP = &admin.UDP{
		SessionsActive:      st.SessionsActive.Load(),
		SessionsCreated:     st.SessionsCreated.Load(),
		SessionsExpired:     st.SessionsExpired.Load(),
		SessionsEvicted:     st.SessionsEvicted.Load(),
		DatagramsToUpstream: st.DatagramsIn.Load(),
		DatagramsToClient:   st.DatagramsOut.Load(),
		SourcesRejected:     st.Rejected.Load(),
		Failovers:           st.Failovers.Load(),
		Dropped:             st.Drops.DropReasons(),
	}
}

func conns(st *forward.Stats, dialFailures uint64) *admin.Conns {
	if st == nil {
		return nil
	}
	return &admin.Conns{
		Accepted:            st.Accepted.Load(),
		RejectedACL:         st.Rejected.Load(),
		RejectedMaxConns:    st.Refused.Load(),
		RejectedPerSource:   st.RejectedPerSource.Load(),
		RejectedProxyHeader: st.RejectedProxyHeader.Load(),
		Active:              st.Active.Load(),
		DialFailures:        dialFailures,
		Unreachable:         st.Unreachable.Load(),
		AcceptErrors:        st.AcceptErrors.Load(),
		AcceptBackingOff:    st.AcceptBackingOff.Load(),
	}
}

// dataPorts is the size of an ftp listener's data-port pool.
func dataPorts(spec config.Listener) int64 {
	first, last := spec.FTP.DataPorts[0], spec.FTP.DataPorts[1]
	if last < first {
		return 0
	}
	return int64(last) - int64(first) + 1
}
