package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/edgerelay/relay/forward"
	"github.com/edgerelay/relay/ftppassive"
	"github.com/edgerelay/relay/limit"
	"github.com/edgerelay/relay/udpstream"
)

// resolveListener checks one listener and builds its runtime value, plus
// the ports it will occupy (for the overlap check).
func resolveListener(fl *fileListener, path string, defs defaults, p *problems) (Listener, []binding) {
	l := Listener{
		Name:         fl.Name,
		Mode:         Mode(fl.Mode),
		ListenSpec:   fl.Listen,
		UpstreamSpec: strings.Join(fl.Upstream, ", "),
		Freebind:     fl.Freebind,
	}
	checkName(fl.Name, path+".name", p)
	switch {
	case fl.Mode == "":
		p.add(path+".mode", "missing (want tcp, ftp, udp or raw)")
	case !l.Mode.valid():
		p.addf(path+".mode", "unknown mode %q (want tcp, ftp, udp or raw)", fl.Mode)
	}
	what := "listener " + fl.Name
	if fl.Name == "" {
		what = path
	}

	var binds []binding
	listen, listenOK := parseListen(fl.Listen, path+".listen", p)
	if listenOK && l.Mode.valid() && l.Mode.Proto() == "tcp" {
		a, _ := checkListenHost(listen.Host)
		if err := checkTCPListenAddr(a); err != nil {
			p.add(path+".listen", err.Error())
		}
	}
	if listenOK {
		addr, _ := checkListenHost(listen.Host)
		binds = append(binds, binding{path: path + ".listen", what: what, proto: l.Mode.Proto(),
			addr: addr, first: listen.First, last: listen.Last})
		for i := range listen.Len() {
			l.Listen = append(l.Listen, listen.At(i))
		}
	}
	l.Upstreams = resolveUpstreams(fl.Upstream, l.Mode.Proto(), listen, listenOK, path+".upstream", p)
	if listenOK {
		checkSelfLoop(&l, listen, path+".upstream", p)
	}

	checkSections(fl, path, p)
	l.Health = resolveHealth(fl.Health, l.Mode, path+".health", p)
	if l.Mode == ModeUDP {
		l.UDP = resolveUDP(fl.UDP, path+".udp", p)
		return l, binds
	}
	l.ConnectTimeout = positive(fl.ConnectTimeout, defs.connectTimeout, path+".connect_timeout", p)
	l.IdleTimeout = positive(fl.IdleTimeout, defs.idleTimeout, path+".idle_timeout", p)
	l.MaxConns = atLeast(fl.MaxConns, defs.maxConns, 0, path+".max_conns", p)
	l.PerSource = resolvePerSource(fl.PerSource, path+".per_source", p)
	resolveProxy(fl, &l, path, p)
	switch l.Mode {
	case ModeFTP:
		var data *binding
		l.FTP, data = resolveFTP(fl.FTP, path+".ftp", p)
		if data != nil && listenOK {
			data.addr, _ = checkListenHost(listen.Host) // data ports are bound beside the control port
			data.what = "the ftp data ports of " + what
			binds = append(binds, *data)
		}
	case ModeRaw:
		l.Raw = resolveRaw(fl.Raw, path+".raw", p)
	}
	if l.Mode == ModeTCP || l.Mode == ModeRaw {
		dir := filepath.Dir(p.src.file)
		l.TLS = resolveTLS(fl.TLS, dir, path+".tls", p)
		l.UpstreamTLS = resolveUpstreamTLS(fl.UpstreamTLS, dir, path+".upstream_tls", p)
	}
	return l, binds
}

// checkName enforces the name rules: the ACL file, logs and metrics use it.
func checkName(name, path string, p *problems) {
	switch {
	case name == "":
		p.add(path, "missing; every listener needs a name ([a-z0-9-]+)")
		return
	case name == "all":
		p.add(path, `"all" is reserved: the ACL file uses it to mean every listener`)
		return
	case name == AdminACLName:
		p.add(path, `"admin" is reserved: the ACL file uses it for the admin endpoint`)
		return
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			p.addf(path, "name %q may only use lowercase letters, digits and '-'", name)
			return
		}
	}
}

func parseListen(spec, path string, p *problems) (HostPorts, bool) {
	if spec == "" {
		p.add(path, "missing (want host:port or host:first-last)")
		return HostPorts{}, false
	}
	hp, err := ParseHostPorts(spec)
	if err != nil {
		p.add(path, err.Error())
		return HostPorts{}, false
	}
	if _, err := checkListenHost(hp.Host); err != nil {
		p.add(path, err.Error())
		return HostPorts{}, false
	}
	if hp.First == 0 {
		// The kernel would pick a free port and nobody would know which.
		p.addf(path, "%q: port 0 is not a port clients can be told; name the port they connect to", spec)
		return HostPorts{}, false
	}
	return hp, true
}

// resolveUpstreams builds the failover list of every listen port. An entry
// with one port takes every listen port to that address; a range maps 1:1
// by offset and must be as long as the listen range.
func resolveUpstreams(specs []string, proto string, listen HostPorts, listenOK bool, path string, p *problems) [][]string {
	if len(specs) == 0 {
		p.add(path, "missing (want host:port, host:first-last, or a list of them)")
		return nil
	}
	entries := make([]HostPorts, 0, len(specs))
	at0 := make([]int, 0, len(specs)) // where each entry is in specs
	for j, spec := range specs {
		at := path
		if len(specs) > 1 {
			at = indexPath(path, j)
		}
		hp, err := ParseHostPorts(spec)
		if err == nil {
			err = checkUpstreamHost(hp.Host, proto)
		}
		switch {
		case err != nil:
			p.add(at, err.Error())
			continue
		case hp.First == 0:
			p.addf(at, "%q: port 0 cannot be dialled", spec)
			continue
		case hp.Len() > 1 && listenOK && hp.Len() != listen.Len():
			p.addf(at, "%q has %d ports but listen %q has %d; a range maps 1:1 and must be as long",
				spec, hp.Len(), listen.String(), listen.Len())
			continue
		}
		if i := slices.IndexFunc(entries, hp.same); i >= 0 {
			p.addf(at, "%q is listed twice (also %s): a failover list names each upstream once",
				spec, indexPath("upstream", at0[i]))
			continue
		}
		if i, k, ok := meetOnAPort(entries, hp); ok && listenOK {
			p.addf(at, "%q names %s for %s, as %s does: a failover list names each upstream once",
				spec, hp.At(min(k, hp.Len()-1)), listen.At(k), indexPath("upstream", at0[i]))
			continue
		}
		entries, at0 = append(entries, hp), append(at0, j)
	}
	if !listenOK || len(entries) != len(specs) {
		return nil
	}
	out := make([][]string, listen.Len())
	for i := range out {
		out[i] = make([]string, len(entries))
		for j, e := range entries {
			if e.Len() == 1 {
				out[i][j] = e.At(0)
			} else {
				out[i][j] = e.At(i)
			}
		}
	}
	return out
}

// meetOnAPort finds an entry that sends some listen port to the same
// upstream as hp does, where one of the two is a single port and the other
// a range (two singles or two ranges alike are same, checked before): it
// returns the entry's index and the listen port's offset. Ranges are as
// long as the listen range.
func meetOnAPort(entries []HostPorts, hp HostPorts) (i, k int, ok bool) {
	for i, e := range entries {
		if e.Len() > 1 == (hp.Len() > 1) || !e.sameHost(hp) {
			continue
		}
		single, rng := e, hp
		if e.Len() > 1 {
			single, rng = hp, e
		}
		if k := int(single.First) - int(rng.First); k >= 0 && k < rng.Len() {
			return i, k, true
		}
	}
	return 0, 0, false
}

// checkSelfLoop refuses an upstream that is the listener's own socket:
// every connection would dial the relay again, until max_conns or the file
// descriptor limit stops it. Only addresses certain to be this machine's are
// caught: the listen IP itself, loopback under a wildcard listen, and the
// unspecified address, which Linux dials as loopback (arrivesAt).
func checkSelfLoop(l *Listener, listen HostPorts, path string, p *problems) {
	own, err := checkListenHost(listen.Host)
	if err != nil || listen.First == 0 {
		return
	}
	for i, ups := range l.Upstreams {
		port := listen.First + uint16(i)
		for _, u := range ups {
			hp, err := ParseHostPorts(u)
			if err != nil || hp.First != port {
				continue
			}
			ip, err := netip.ParseAddr(hp.Host)
			if err != nil {
				continue
			}
			if arrivesAt(ip, own) {
				p.addf(path, "%s is this listener's own address (%s): every connection would loop back into the relay", u, l.Listen[i])
				return
			}
		}
	}
}

// checkSections refuses settings the listener's mode would ignore, so a
// setting in the wrong place is not silently without effect.
func checkSections(fl *fileListener, path string, p *problems) {
	mode := Mode(fl.Mode)
	if !mode.valid() {
		return
	}
	if fl.FTP != nil && mode != ModeFTP {
		p.addf(path+".ftp", "only for mode ftp, this listener is %s", mode)
	}
	if fl.UDP != nil && mode != ModeUDP {
		p.addf(path+".udp", "only for mode udp, this listener is %s", mode)
	}
	if fl.Raw != nil && mode != ModeRaw {
		p.addf(path+".raw", "only for mode raw, this listener is %s", mode)
	}
	if mode == ModeFTP || mode == ModeUDP {
		if fl.TLS != nil {
			p.addf(path+".tls", "only for modes tcp and raw, this listener is %s", mode)
		}
		if fl.UpstreamTLS != nil {
			p.addf(path+".upstream_tls", "only for modes tcp and raw, this listener is %s", mode)
		}
	}
	if mode == ModeUDP {
		for _, k := range []struct {
			key string
			set bool
		}{
			{"connect_timeout", fl.ConnectTimeout != nil},
			{"idle_timeout", fl.IdleTimeout != nil},
			{"max_conns", fl.MaxConns != nil},
			{"per_source", fl.PerSource != nil},
			{"proxy_protocol", fl.ProxyProtocol != nil},
			{"accept_proxy_protocol", fl.AcceptProxy != nil},
			{"proxy_header_timeout", fl.ProxyTimeout != nil},
		} {
			if k.set {
				p.add(path+"."+k.key, "not used by udp listeners (see udp.session_timeout and udp.max_sessions)")
			}
		}
	}
}

func resolvePerSource(fp *filePerSource, path string, p *problems) PerSource {
	if fp == nil {
		return PerSource{}
	}
	ps := PerSource{
		MaxConns:   atLeast(fp.MaxConns, 0, 0, path+".max_conns", p),
		IPv4Prefix: prefixLen(fp.IPv4Prefix, limit.DefaultIPv4Prefix, 32, path+".ipv4_prefix", p),
		IPv6Prefix: prefixLen(fp.IPv6Prefix, limit.DefaultIPv6Prefix, 128, path+".ipv6_prefix", p),
	}
	if fp.Rate != nil {
		ps.Rate = float64(*fp.Rate)
		if ps.Rate < 0 {
			p.addf(path+".rate", "must not be negative, got %g", ps.Rate)
		}
	}
	switch {
	case fp.Burst != nil && ps.Rate <= 0:
		p.add(path+".burst", "only with rate: burst is how far a source may run ahead of its rate")
	case fp.Burst != nil:
		ps.Burst = atLeast(fp.Burst, 0, 1, path+".burst", p)
	case ps.Rate > 0:
		ps.Burst = limit.DefaultBurst(ps.Rate)
	}
	if !ps.Limits() && fp.MaxConns == nil && fp.Rate == nil {
		p.add(path, "sets no limit: give max_conns, rate, or both (or remove the section)")
	}
	return ps
}

// resolveProxy reads the PROXY protocol keys of a tcp or raw listener. An
// ftp listener refuses them: FTP servers do not read the header, and the
// data connections a front would relay carry none.
func resolveProxy(fl *fileListener, l *Listener, path string, p *problems) {
	if l.Mode == ModeFTP {
		for _, k := range []struct {
			key string
			set bool
		}{
			{"proxy_protocol", fl.ProxyProtocol != nil},
			{"accept_proxy_protocol", fl.AcceptProxy != nil},
			{"proxy_header_timeout", fl.ProxyTimeout != nil},
		} {
			if k.set {
				p.add(path+"."+k.key, "not for ftp listeners: FTP servers do not read PROXY headers, and data connections cannot carry one")
			}
		}
		return
	}
	if v := fl.ProxyProtocol; v != nil {
		switch *v {
		case "v1":
			l.ProxyProtocol = 1
		case "v2":
			l.ProxyProtocol = 2
		case "", "off":
		default:
			p.addf(path+".proxy_protocol", "unknown version %q (want v1 or v2)", *v)
		}
	}
	for i, spec := range fl.AcceptProxy {
		pfx, err := parsePrefix(spec)
		if err != nil {
			p.add(indexPath(path+".accept_proxy_protocol", i), err.Error())
			continue
		}
		l.AcceptProxy = append(l.AcceptProxy, pfx)
	}
	if fl.ProxyTimeout != nil && len(fl.AcceptProxy) == 0 {
		p.add(path+".proxy_header_timeout", "only with accept_proxy_protocol")
	}
	if len(fl.AcceptProxy) > 0 || fl.ProxyTimeout != nil {
		l.ProxyHeaderTimeout = positive(fl.ProxyTimeout, forward.DefaultProxyHeaderTimeout, path+".proxy_header_timeout", p)
	}
}

// parsePrefix reads a CIDR or a single address (a /32 or /128).
func parsePrefix(spec string) (netip.Prefix, error) {
	if pfx, err := netip.ParsePrefix(spec); err == nil {
		if pfx != pfx.Masked() {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set (did you mean %s?)", spec, pfx.Masked())
		}
		if a := pfx.Addr(); a.Is4In6() {
			if pfx.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("%q covers more than the IPv4-mapped range", spec)
			}
			return netip.PrefixFrom(a.Unmap(), pfx.Bits()-96), nil // matched against unmapped clients
		}
		return pfx, nil
	}
	a, err := netip.ParseAddr(spec)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or a CIDR like 10.0.0.0/24", spec)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// prefixLen reads a prefix length between 1 and most bits.
func prefixLen(n *int, def, most int, path string, p *problems) int {
	if n == nil {
		return def
	}
	if *n < 1 || *n > most {
		p.addf(path, "must be between 1 and %d, got %d", most, *n)
	}
	return *n
}

// minHealthInterval is the shortest health.interval: 20 checks a second of
// each upstream, already far more than a venue needs to know one is down.
const minHealthInterval = 50 * time.Millisecond

// resolveHealth reads the health section: interval is required in it, a
// check may not take longer than the pause between checks, and only a udp
// check sends and expects payload (a tcp check is a connect).
func resolveHealth(fh *fileHealth, mode Mode, path string, p *problems) Health {
	if fh == nil {
		return Health{}
	}
	var h Health
	if fh.Interval == nil {
		p.add(path+".interval", "missing: a health section needs the time between checks, like 10s")
	} else {
		h.Interval = positive(fh.Interval, 0, path+".interval", p)
		if h.Interval > 0 && h.Interval < minHealthInterval {
			p.addf(path+".interval", "%s is below %s: each check is a new connection to every upstream, so checks this close flood them and fill this box's ports",
				formatDuration(h.Interval), formatDuration(minHealthInterval))
		}
	}
	h.Timeout = positive(fh.Timeout, 0, path+".timeout", p)
	if h.Interval > 0 && h.Timeout > h.Interval {
		p.addf(path+".timeout", "%s is longer than interval %s; a check must end before the next begins",
			formatDuration(h.Timeout), formatDuration(h.Interval))
	}
	for _, k := range []struct {
		key string
		val *string
	}{{"send", fh.Send}, {"expect", fh.Expect}} {
		if k.val != nil && mode != ModeUDP {
			p.addf(path+"."+k.key, "only for udp listeners, this one is %s (its check is a TCP connect)", mode)
		}
	}
	if fh.Send != nil {
		h.Send = *fh.Send
	}
	if fh.Expect != nil {
		h.Expect, h.ExpectReply = *fh.Expect, true
	}
	return h
}

func resolveFTP(ff *fileFTP, path string, p *problems) (FTP, *binding) {
	f := FTP{DataTimeout: ftppassive.DefaultDataTimeout}
	if ff == nil || ff.DataPorts == nil {
		p.add(path+".data_ports", "missing: an ftp listener needs a range of relay-owned data ports, like 20002-29999")
		if ff == nil {
			return f, nil
		}
	}
	var data *binding
	if ff.DataPorts != nil {
		first, last, err := ParsePortRange(*ff.DataPorts)
		switch {
		case err != nil:
			p.add(path+".data_ports", err.Error())
		case first == 0:
			p.add(path+".data_ports", "port 0 is not a data port range")
		default:
			f.DataPorts = [2]uint16{first, last}
			data = &binding{path: path + ".data_ports", proto: "tcp", first: first, last: last}
		}
	}
	if ff.PublicIP != "" {
		ip, err := netip.ParseAddr(ff.PublicIP)
		switch {
		case err != nil:
			p.addf(path+".public_ip", "%q is not an IP address", ff.PublicIP)
		case ip.IsUnspecified():
			p.addf(path+".public_ip", "%q cannot be advertised to clients; leave it empty to use the control connection's address", ff.PublicIP)
		default:
			f.PublicIP = ip.Unmap()
		}
	}
	f.TrustServerIP = ff.TrustServerIP
	f.DataTimeout = positive(ff.DataTimeout, ftppassive.DefaultDataTimeout, path+".data_timeout", p)
	return f, data
}

func resolveUDP(fu *fileUDP, path string, p *problems) UDP {
	if fu == nil {
		fu = &fileUDP{}
	}
	u := UDP{
		SessionTimeout: positive(fu.SessionTimeout, udpstream.DefaultSessionTimeout, path+".session_timeout", p),
		MaxSessions:    atLeast(fu.MaxSessions, udpstream.DefaultMaxSessions, 1, path+".max_sessions", p),
		ReadBuffer:     sizeAtLeast(fu.ReadBuffer, path+".read_buffer", p),
		WriteBuffer:    sizeAtLeast(fu.WriteBuffer, path+".write_buffer", p),
	}
	u.UnconfirmedTimeout = positive(fu.Unconfirmed, min(udpstream.DefaultUnconfirmedTimeout, u.SessionTimeout),
		path+".unconfirmed_timeout", p)
	if u.UnconfirmedTimeout > u.SessionTimeout {
		p.addf(path+".unconfirmed_timeout", "%s is longer than session_timeout (%s); an unanswered session cannot outlive an answered one",
			formatDuration(u.UnconfirmedTimeout), formatDuration(u.SessionTimeout))
	}
	u.MaxSessionsPerSource = atLeast(fu.PerSource, udpstream.DefaultSessionsPerSource(u.MaxSessions), 1,
		path+".max_sessions_per_source", p)
	if fu.PerSourceRate != nil {
		u.PerSourceRate = float64(*fu.PerSourceRate)
		if u.PerSourceRate <= 0 {
			p.addf(path+".per_source_rate", "must be above zero, got %g (remove the key for no cap)", u.PerSourceRate)
		}
	}
	if fu.PerSource != nil && u.MaxSessions >= 1 && u.MaxSessionsPerSource > u.MaxSessions {
		p.addf(path+".max_sessions_per_source", "%d is more than max_sessions (%d)", u.MaxSessionsPerSource, u.MaxSessions)
	}
	return u
}

// sizeAtLeast returns a socket buffer size, refusing sizes the kernel would
// round up to its minimum anyway (and zero, which reads as "unset" below).
func sizeAtLeast(n *byteSize, path string, p *problems) int {
	const minBuffer = 4096
	if n == nil {
		return udpstream.DefaultSocketBuffer
	}
	if *n < minBuffer {
		p.add(path, fmt.Sprintf("must be at least %d bytes, got %d", minBuffer, int(*n)))
	}
	return int(*n)
}

func resolveRaw(fr *fileRaw, path string, p *problems) Raw {
	if fr == nil {
		fr = &fileRaw{}
	}
	return Raw{
		Exclusive:    fr.Exclusive,
		QueueTimeout: positive(fr.QueueTimeout, forward.DefaultQueueTimeout, path+".queue_timeout", p),
		UserTimeout:  nonNegative(fr.UserTimeout, DefaultUserTimeout, path+".user_timeout", p),
	}
}
