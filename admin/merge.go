package admin

import (
	"maps"
	"slices"
	"time"
)

// Merge adds b into a (see merge).
func Merge(a, b Snapshot) Snapshot { return merge(a, b) }

// merge adds b into a. The daemon may hold two instances under one name for
// a moment (a changed listener draining beside its replacement); Prometheus
// refuses duplicate series, so their counts are summed. Gauges sum too:
// active connections of both are open. The facts (state, addresses) are
// those of the serving instance.
func merge(a, b Snapshot) Snapshot {
	if a.State == "" || a.State == StateDraining && b.State != "" {
		a.State, a.Listen, a.HealthChecks = b.State, b.Listen, b.HealthChecks
		a.Upstreams = mergeUpstreams(b.Upstreams, a.Upstreams)
	} else {
		a.Upstreams = mergeUpstreams(a.Upstreams, b.Upstreams)
	}
	a.BytesToUpstream += b.BytesToUpstream
	a.BytesToClient += b.BytesToClient
	a.Conns = mergeConns(a.Conns, b.Conns)
	a.UDP = mergeUDP(a.UDP, b.UDP)
	a.FTP = mergeFTP(a.FTP, b.FTP)
	a.Raw = mergeRaw(a.Raw, b.Raw)
	a.TLS = mergeTLS(a.TLS, b.TLS)
	return a
}

// mergeUpstreams is facts' upstreams (the serving instance's, with their
// health) with the failover counts of other's added; an upstream only
// other counted is kept for its count, without health.
func mergeUpstreams(facts, other []Upstream) []Upstream {
	if len(other) == 0 {
		return facts
	}
	out := slices.Clone(facts)
	for _, u := range other {
		i := slices.IndexFunc(out, func(o Upstream) bool { return o.Address == u.Address })
		switch {
		case i >= 0:
			out[i].Failovers += u.Failovers
		case u.Failovers > 0:
			out = append(out, Upstream{Address: u.Address, Failovers: u.Failovers})
		}
	}
	return out
}

func mergeTLS(a, b *TLS) *TLS {
	if a == nil || b == nil {
		return either(a, b)
	}
	return &TLS{Client: mergeHandshakes(a.Client, b.Client), Upstream: mergeHandshakes(a.Upstream, b.Upstream)}
}

func mergeHandshakes(a, b *Handshakes) *Handshakes {
	if a == nil || b == nil {
		return either(a, b)
	}
	return &Handshakes{OK: a.OK + b.OK, Resumed: a.Resumed + b.Resumed, Failed: addCounts(a.Failed, b.Failed),
		LastOK: later(a.LastOK, b.LastOK), Failing: mergeFailing(a.Failing, b.Failing)}
}

// later returns the later of two times, nil when both are.
func later(a, b *time.Time) *time.Time {
	if a == nil || b != nil && b.After(*a) {
		return b
	}
	return a
}

// mergeFailing keeps the newer failure of each reason, newest first.
func mergeFailing(a, b []HandshakeFailure) []HandshakeFailure {
	if len(a) == 0 {
		return b
	}
	if len(b) == 0 {
		return a
	}
	var out []HandshakeFailure
	for _, f := range append(slices.Clone(a), b...) {
		i := slices.IndexFunc(out, func(o HandshakeFailure) bool { return o.Reason == f.Reason })
		switch {
		case i < 0:
			out = append(out, f)
		case f.At.After(out[i].At):
			out[i] = f
		}
	}
	slices.SortFunc(out, func(x, y HandshakeFailure) int { return y.At.Compare(x.At) })
	return out
}

func mergeConns(a, b *Conns) *Conns {
	if a == nil || b == nil {
		return either(a, b)
	}
	return &Conns{
		Accepted:            a.Accepted + b.Accepted,
		RejectedACL:         a.RejectedACL + b.RejectedACL,
		RejectedMaxConns:    a.RejectedMaxConns + b.RejectedMaxConns,
		RejectedPerSource:   a.RejectedPerSource + b.RejectedPerSource,
		RejectedProxyHeader: a.RejectedProxyHeader + b.RejectedProxyHeader,
		Active:              a.Active + b.Active,
		DialFailures:        a.DialFailures + b.DialFailures,
		Unreachable:         a.Unreachable + b.Unreachable,
		AcceptErrors:        a.AcceptErrors + b.AcceptErrors,
		AcceptBackingOff:    a.AcceptBackingOff + b.AcceptBackingOff,
	}
}

func mergeUDP(a, b *UDP) *UDP {
	if a == nil || b == nil {
		return either(a, b)
	}
	dropped := addCounts(a.Dropped, b.Dropped)
	return &UDP{
		SessionsActive:      a.SessionsActive + b.SessionsActive,
		SessionsCreated:     a.SessionsCreated + b.SessionsCreated,
		SessionsExpired:     a.SessionsExpired + b.SessionsExpired,
		SessionsEvicted:     a.SessionsEvicted + b.SessionsEvicted,
		DatagramsToUpstream: a.DatagramsToUpstream + b.DatagramsToUpstream,
		DatagramsToClient:   a.DatagramsToClient + b.DatagramsToClient,
		SourcesRejected:     a.SourcesRejected + b.SourcesRejected,
		Failovers:           a.Failovers + b.Failovers,
		Dropped:             dropped,
	}
}

func mergeFTP(a, b *FTP) *FTP {
	if a == nil || b == nil {
		return either(a, b)
	}
	return &FTP{
		Sessions:       a.Sessions + b.Sessions,
		NoUpstream:     a.NoUpstream + b.NoUpstream,
		LinesTooLong:   a.LinesTooLong + b.LinesTooLong,
		TLSPassthrough: a.TLSPassthrough + b.TLSPassthrough,

		DataOpened:     a.DataOpened + b.DataOpened,
		DataFailed:     a.DataFailed + b.DataFailed,
		DataPortsInUse: a.DataPortsInUse + b.DataPortsInUse,
		DataPorts:      max(a.DataPorts, b.DataPorts), // one pool per name, not two

		DataBytesToUpstream: a.DataBytesToUpstream + b.DataBytesToUpstream,
		DataBytesToClient:   a.DataBytesToClient + b.DataBytesToClient,

		BouncesRefused:    a.BouncesRefused + b.BouncesRefused,
		DataTheftAttempts: a.DataTheftAttempts + b.DataTheftAttempts,

		PassivePortsRefused: a.PassivePortsRefused + b.PassivePortsRefused,
	}
}

func mergeRaw(a, b *Raw) *Raw {
	if a == nil || b == nil {
		return either(a, b)
	}
	return &Raw{
		QueueLength:   a.QueueLength + b.QueueLength,
		Waits:         a.Waits + b.Waits,
		WaitTime:      a.WaitTime + b.WaitTime,
		QueueTimeouts: a.QueueTimeouts + b.QueueTimeouts,
		Printing:      slices.Concat(a.Printing, b.Printing),
	}
}

// addCounts returns a new map with the counts of a and b added by key; nil
// when both are empty.
func addCounts(a, b map[string]uint64) map[string]uint64 {
	sum := maps.Clone(a)
	if sum == nil && len(b) > 0 {
		sum = make(map[string]uint64, len(b))
	}
	for k, n := range b {
		sum[k] += n
	}
	return sum
}

// either returns whichever of a and b is set (a when both are nil).
func either[T any](a, b *T) *T {
	if a == nil {
		return b
	}
	return a
}
