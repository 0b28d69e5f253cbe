package daemon

import (
	"github.com/edgerelay/relay/config"
	"github.com/edgerelay/relay/forward"
	"github.com/edgerelay/relay/ftppassive"
	"github.com/edgerelay/relay/limit"
	"github.com/edgerelay/relay/udpstream"
	"github.com/edgerelay/relay/upstream"
)

// The functions below map a resolved listener to its data plane's Config.
// They are pure: every value comes from the listener, with the defaults
// config already applied; the runtime wiring (ACL guard, pipe pool,
// inherited sockets, logger) is added by open. mapping_test.go fails when a
// field of config.Listener reaches none of them, so a new key cannot be
// dropped on the way.

// forwardConfig maps a tcp or raw listener.
func forwardConfig(l config.Listener) forward.Config {
	cfg := forward.Config{
		Name:           l.Name,
		Listen:         l.Listen,
		Upstreams:      l.Upstreams,
		ConnectTimeout: l.ConnectTimeout,
		IdleTimeout:    l.IdleTimeout,
		MaxConns:       l.MaxConns,
		PerSource:      perSource(l.PerSource),
		Freebind:       l.Freebind,

		ProxyProtocol:      l.ProxyProtocol,
		AcceptProxy:        l.AcceptProxy,
		ProxyHeaderTimeout: l.ProxyHeaderTimeout,
	}
	if l.Mode == config.ModeRaw {
		cfg.Raw = &forward.Raw{
			Exclusive:    l.Raw.Exclusive,
			QueueTimeout: l.Raw.QueueTimeout,
			UserTimeout:  l.Raw.UserTimeout,
		}
	}
	return cfg
}

// ftpConfig maps an ftp listener.
func ftpConfig(l config.Listener) ftppassive.Config {
	return ftppassive.Config{
		Name:           l.Name,
		Listen:         l.Listen,
		Upstreams:      l.Upstreams,
		DataPorts:      l.FTP.DataPorts,
		PublicIP:       l.FTP.PublicIP,
		TrustServerIP:  l.FTP.TrustServerIP,
		DataTimeout:    l.FTP.DataTimeout,
		ConnectTimeout: l.ConnectTimeout,
		IdleTimeout:    l.IdleTimeout,
		MaxConns:       l.MaxConns,
		PerSource:      perSource(l.PerSource),
		Freebind:       l.Freebind,
	}
}

// perSource maps the per_source section of a tcp, raw or ftp listener.
func perSource(ps config.PerSource) limit.Config {
	return limit.Config{
		MaxConns:   ps.MaxConns,
		Rate:       ps.Rate,
		Burst:      ps.Burst,
		IPv4Prefix: ps.IPv4Prefix,
		IPv6Prefix: ps.IPv6Prefix,
	}
}

// upstreamConfig maps the upstream choice of a listener: its lists, the
// probe timeout and the active checks. open adds the DNS cache and logger.
func upstreamConfig(l config.Listener) upstream.Config {
	network, timeout := "tcp", l.ConnectTimeout
	if l.Mode == config.ModeUDP {
		network, timeout = "udp", 0
	}
	return upstream.Config{
		Listener: l.Name,
		Network:  network,
		Lists:    l.Upstreams,
		Timeout:  timeout,
		Health: upstream.Health{Interval: l.Health.Interval, Timeout: l.Health.Timeout,
			Send: []byte(l.Health.Send), Expect: []byte(l.Health.Expect), ExpectReply: l.Health.ExpectReply},
	}
}

// udpConfig maps a udp listener.
func udpConfig(l config.Listener) udpstream.Config {
	return udpstream.Config{
		Name:                 l.Name,
		Listen:               l.Listen,
		Upstreams:            l.Upstreams,
		SessionTimeout:       l.UDP.SessionTimeout,
		MaxSessions:          l.UDP.MaxSessions,
		UnconfirmedTimeout:   l.UDP.UnconfirmedTimeout,
		MaxSessionsPerSource: l.UDP.MaxSessionsPerSource,
		PerSourceRate:        l.UDP.PerSourceRate,
		ReadBuffer:           l.UDP.ReadBuffer,
		WriteBuffer:          l.UDP.WriteBuffer,
		Freebind:             l.Freebind,
	}
}
