package config

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/edgerelay/relay/upstream"
)

// Describe prints the resolved configuration for "relay check": every
// listener with its port mapping (consecutive ports folded into ranges),
// limits and mode settings, defaults applied. The form is stable, so it can
// be diffed and kept as a golden file.
func (c *Config) Describe(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "config: %s\n", c.Path)
	fmt.Fprintf(bw, "log: level=%s format=%s\n", c.Log.Level, c.Log.Format)
	admin := c.Admin.Listen
	if admin == "" {
		admin = "off"
	}
	fmt.Fprintf(bw, "admin: %s\n", admin)
	if len(c.Admin.Hosts) > 0 {
		fmt.Fprintf(bw, "admin.hosts: %s\n", strings.Join(c.Admin.Hosts, ", "))
	}
	fmt.Fprintf(bw, "shutdown_grace: %s\n", formatDuration(c.ShutdownGrace))
	if c.Reload.HardStopAfter > 0 {
		fmt.Fprintf(bw, "reload.hard_stop_after: %s\n", formatDuration(c.Reload.HardStopAfter))
	}
	fmt.Fprintf(bw, "listeners: %d\n", len(c.Listeners))
	for i := range c.Listeners {
		bw.WriteString("\n")
		c.Listeners[i].describe(bw)
	}
	return bw.Flush()
}

func (l *Listener) describe(w io.Writer) {
	fmt.Fprintf(w, "listener %s (%s)\n", l.Name, l.Mode)
	fmt.Fprintf(w, "  listen:   %s  [%d %s]\n", l.ListenSpec, len(l.Listen), plural(len(l.Listen), "port"))
	fmt.Fprintf(w, "  upstream: %s\n", l.UpstreamSpec)
	for _, r := range l.mapping() {
		fmt.Fprintf(w, "  map:      %s\n", r)
	}
	if h := l.Health; h.Interval > 0 {
		timeout := formatDuration(h.Timeout)
		switch {
		case h.Timeout > 0:
		case l.Mode == ModeUDP:
			timeout = formatDuration(upstream.DefaultUDPTimeout) + " (default)"
		default:
			timeout = formatDuration(l.ConnectTimeout) + " (connect_timeout)"
		}
		fmt.Fprintf(w, "  health:   interval=%s timeout=%s\n", formatDuration(h.Interval), timeout)
		if h.Send != "" || h.ExpectReply {
			expect := "none (only ICMP unreachable counts as down)"
			if h.ExpectReply {
				expect = fmt.Sprintf("%q (silence counts as down)", h.Expect)
			}
			fmt.Fprintf(w, "  health:   send=%q expect=%s\n", h.Send, expect)
		}
	}
	switch l.Mode {
	case ModeUDP:
		fmt.Fprintf(w, "  udp:      session_timeout=%s unconfirmed_timeout=%s max_sessions=%d max_sessions_per_source=%d read_buffer=%s write_buffer=%s\n",
			formatDuration(l.UDP.SessionTimeout), formatDuration(l.UDP.UnconfirmedTimeout), l.UDP.MaxSessions, l.UDP.MaxSessionsPerSource,
			formatSize(l.UDP.ReadBuffer), formatSize(l.UDP.WriteBuffer))
		if l.UDP.PerSourceRate > 0 {
			fmt.Fprintf(w, "  udp:      per_source_rate=%s\n", formatRate(l.UDP.PerSourceRate))
		}
		return
	}
	maxConns := fmt.Sprint(l.MaxConns)
	if l.MaxConns == 0 {
		maxConns = "unlimited"
	}
	fmt.Fprintf(w, "  limits:   connect_timeout=%s idle_timeout=%s max_conns=%s\n",
		formatDuration(l.ConnectTimeout), formatDuration(l.IdleTimeout), maxConns)
	if ps := l.PerSource; ps.Limits() {
		fmt.Fprintf(w, "  per_source: max_conns=%s rate=%s burst=%d ipv4_prefix=%d ipv6_prefix=%d\n",
			unlimited(ps.MaxConns), formatRate(ps.Rate), ps.Burst, ps.IPv4Prefix, ps.IPv6Prefix)
	}
	if l.ProxyProtocol != 0 || len(l.AcceptProxy) > 0 {
		send := "off"
		if l.ProxyProtocol != 0 {
			send = fmt.Sprintf("v%d", l.ProxyProtocol)
		}
		trusted := make([]string, len(l.AcceptProxy))
		for i, pfx := range l.AcceptProxy {
			trusted[i] = pfx.String()
		}
		fmt.Fprintf(w, "  proxy:    send=%s accept_from=[%s] header_timeout=%s\n",
			send, strings.Join(trusted, " "), formatDuration(l.ProxyHeaderTimeout))
	}
	switch l.Mode {
	case ModeFTP:
		ip := "(local address of the control connection)"
		if l.FTP.PublicIP.IsValid() {
			ip = l.FTP.PublicIP.String()
		}
		fmt.Fprintf(w, "  ftp:      data_ports=%s public_ip=%s trust_server_ip=%t data_timeout=%s\n",
			FormatPortRange(l.FTP.DataPorts[0], l.FTP.DataPorts[1]), ip,
			l.FTP.TrustServerIP, formatDuration(l.FTP.DataTimeout))
	case ModeRaw:
		fmt.Fprintf(w, "  raw:      exclusive=%t queue_timeout=%s user_timeout=%s\n",
			l.Raw.Exclusive, formatDuration(l.Raw.QueueTimeout), formatDuration(l.Raw.UserTimeout))
	}
	if t := l.TLS; t != nil {
		clientCA := "(none: server-only TLS)"
		if t.ClientCA != "" {
			clientCA = t.ClientCA
		}
		version := "1.3"
		if t.MinVersion == tls.VersionTLS12 {
			version = "1.2"
		}
		fmt.Fprintf(w, "  tls:      cert=%s key=%s client_ca=%s min_version=%s key_exchange=%s\n",
			t.Cert, t.Key, clientCA, version, t.KeyExchange)
	}
	if u := l.UpstreamTLS; u != nil {
		name, cert := u.ServerName, "(none)"
		if name == "" {
			name = "(the upstream host)"
		}
		if u.Cert != "" {
			cert = u.Cert + " key=" + u.Key
		}
		fmt.Fprintf(w, "  upstream_tls: ca=%s server_name=%s cert=%s key_exchange=%s\n", u.CA, name, cert, u.KeyExchange)
	}
}

// mapping folds the per-port Listen/Upstreams tables back into lines like
// "0.0.0.0:8100-8226 -> 10.0.0.6:8100-8226, then 10.0.0.7:8100-8226": a run
// of consecutive listen ports continues while every failover entry keeps the
// same host and moves by the same step (1: 1:1 range, 0: one address).
func (l *Listener) mapping() []string {
	var lines []string
	for i := 0; i < len(l.Listen); {
		listen, _ := ParseHostPorts(l.Listen[i])
		ups := make([]HostPorts, len(l.Upstreams[i]))
		steps := make([]int, len(ups))
		for j, u := range l.Upstreams[i] {
			ups[j], _ = ParseHostPorts(u)
			steps[j] = -1 // not known until the run has two ports
		}
		k := i + 1
		for ; k < len(l.Listen) && l.extends(k, &listen, ups, steps); k++ {
		}
		targets := make([]string, len(ups))
		for j := range ups {
			targets[j] = ups[j].String()
		}
		lines = append(lines, listen.String()+" -> "+strings.Join(targets, ", then "))
		i = k
	}
	return lines
}

// extends reports whether entry k continues the run in listen and ups, and
// if so widens them.
func (l *Listener) extends(k int, listen *HostPorts, ups []HostPorts, steps []int) bool {
	next, err := ParseHostPorts(l.Listen[k])
	if err != nil || next.Host != listen.Host || int(next.First) != int(listen.Last)+1 ||
		len(l.Upstreams[k]) != len(ups) {
		return false
	}
	nextUps := make([]HostPorts, len(ups))
	for j, u := range l.Upstreams[k] {
		n, err := ParseHostPorts(u)
		step := int(n.First) - int(ups[j].Last)
		if err != nil || n.Host != ups[j].Host || step < 0 || step > 1 || steps[j] >= 0 && step != steps[j] {
			return false
		}
		nextUps[j] = n
	}
	listen.Last = next.First
	for j := range ups {
		steps[j] = int(nextUps[j].First) - int(ups[j].Last)
		ups[j].Last = nextUps[j].First
	}
	return true
}

// formatDuration drops the zero tails of time.Duration.String: 1h, 2m, 30s.
func unlimited(n int) string {
	if n == 0 {
		return "unlimited"
	}
	return fmt.Sprint(n)
}

func formatRate(r float64) string {
	if r == 0 {
		return "unlimited"
	}
	return strconv.FormatFloat(r, 'g', -1, 64) + "/s"
}

func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// formatSize writes whole KiB/MiB/GiB with their unit, other sizes in bytes.
func formatSize(n int) string {
	for _, u := range []struct {
		name string
		size int
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%dB", n)
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
