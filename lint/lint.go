// Package lint finds what is valid in a config and its ACL but is probably
// not meant: no ACL at all, an ACL that allows no source, a listener no ACL
// rule names while other listeners are named, a rule naming a listener it
// can never match (hostssl without tls.client_ca, tcp on udp), a rule
// written with host bits set (203.0.113.7/24 is all of 203.0.113.0/24) or
// one that never decides because an earlier rule matches all it matches
// first (lines.go), an admin endpoint beyond loopback that no rule admits
// anyone to, FTP data ports inside the kernel's ephemeral port range, a
// listen address this box does not have on a listener without freebind, a
// wildcard listener whose upstream is this box's address on its own port.
// Its one entry point, Check, is called by relay at start and on every
// reload (which log each Warning) and by relay check (which prints them,
// and with -strict fails on them), so both say the same.
//
// Where its job ends: lint refuses nothing (config and acl refuse what is
// invalid) and reads nothing but the kernel's ephemeral port range
// and the interfaces' addresses (ReadKernel); the config and ACL come
// loaded.
package lint

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"

	"github.com/edgerelay/relay/acl"
	"github.com/edgerelay/relay/config"
)

// Warning is one finding, about the config key at Key.
type Warning struct {
	Key string // key path, like "listeners[2].ftp.data_ports"
	Msg string
}

// String returns "key: message".
func (w Warning) String() string { return w.Key + ": " + w.Msg }

// Kernel is what Check needs to know of the machine.
type Kernel struct {
	// EphemeralFirst and EphemeralLast are the ports the kernel hands to
	// outgoing connections (net.ipv4.ip_local_port_range). Zero: unknown.
	EphemeralFirst, EphemeralLast uint16
	// Addrs are the addresses of this box's interfaces. nil: unknown.
	Addrs []netip.Addr
}

// ReadKernel reads this machine's Kernel; what it cannot read stays zero.
func ReadKernel() Kernel {
	var k Kernel
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		k = parseEphemeral(b)
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				k.Addrs = append(k.Addrs, p.Addr().Unmap())
			}
		}
	}
	return k
}

// parseEphemeral reads "first<whitespace>last" as the proc file writes it.
func parseEphemeral(b []byte) Kernel {
	f := bytes.Fields(b)
	if len(f) != 2 {
		return Kernel{}
	}
	first, err1 := strconv.ParseUint(string(f[0]), 10, 16)
	last, err2 := strconv.ParseUint(string(f[1]), 10, 16)
	if err1 != nil || err2 != nil || first > last {
		return Kernel{}
	}
	return Kernel{EphemeralFirst: uint16(first), EphemeralLast: uint16(last)}
}

// Check returns the warnings for cfg with its ACL list (nil: cfg has no
// ACL), in a stable order: the ACL's first, then each listener's in file
// order.
func Check(cfg *config.Config, list *acl.List, k Kernel) []Warning {
	ws := checkACL(cfg, list)
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		ws = append(ws, checkLocal(l, fmt.Sprintf("listeners[%d].listen", i), k)...)
		ws = append(ws, checkOwnUpstream(l, fmt.Sprintf("listeners[%d].upstream", i), k)...)
		if l.Mode == config.ModeFTP {
			ws = append(ws, checkDataPorts(l.FTP.DataPorts, fmt.Sprintf("listeners[%d].ftp.data_ports", i), k)...)
		}
	}
	return ws
}

func checkACL(cfg *config.Config, list *acl.List) []Warning {
	if list == nil {
		return []Warning{{Key: "acl", Msg: "no acl section: every source address may connect to every listener"}}
	}
	rules := list.Rules()
	if !slices.ContainsFunc(rules, func(r acl.Rule) bool { return r.Allow }) {
		return []Warning{{Key: "acl.file",
			Msg: cfg.ACLPath + " allows no source: every source is rejected on every listener"}}
	}
	ws := append(neverMatch(cfg, rules), checkLines(rules)...)
	ws = append(ws, checkAdmin(cfg, rules)...)
	// No rule decides for a listener the file never names (or names only
	// in rules that cannot match it): every source is rejected there,
	// which beside named listeners looks forgotten.
	for i := range cfg.Listeners {
		if l := &cfg.Listeners[i]; !covered(rules, l) {
			ws = append(ws, Warning{Key: fmt.Sprintf("listeners[%d]", i),
				Msg: fmt.Sprintf("no rule in %s names listener %q (or all): every source is rejected on it, while other listeners have rules", cfg.ACLPath, l.Name)})
		}
	}
	return ws
}

// covered reports whether a rule that names l (or all) can decide for it.
func covered(rules []acl.Rule, l *config.Listener) bool {
	return slices.ContainsFunc(rules, func(r acl.Rule) bool {
		return (r.Listeners == nil || slices.Contains(r.Listeners, l.Name)) && never(&r, l) == ""
	})
}

// adminListener stands for the admin endpoint among the ACL's listeners:
// plain HTTP over TCP.
func adminListener() *config.Listener {
	return &config.Listener{Name: config.AdminACLName, Mode: config.ModeTCP}
}

// checkAdmin warns when the admin endpoint listens beyond loopback, so that
// the ACL decides who may open it, and no rule can admit anyone there.
func checkAdmin(cfg *config.Config, rules []acl.Rule) []Warning {
	listen := cfg.Admin.Listen
	if ap, err := netip.ParseAddrPort(listen); listen == "" || err == nil && ap.Addr().IsLoopback() || covered(rules, adminListener()) {
		return nil
	}
	return []Warning{{Key: "admin.listen", Msg: fmt.Sprintf("%s is beyond loopback, so %s decides who may open the admin endpoint, "+
		"and no rule there names admin (or all): every client gets 403, a Prometheus on this box too", listen, cfg.ACLPath)}}
}

// neverMatch warns of each rule that names a listener it can never decide
// for, at the rule's line.
func neverMatch(cfg *config.Config, rules []acl.Rule) []Warning {
	admin := adminListener()
	var ws []Warning
	for i := range rules {
		r := &rules[i]
		for _, name := range r.Listeners {
			l := cfg.Lookup(name)
			if name == config.AdminACLName {
				l = admin
			}
			if l == nil {
				continue
			}
			if why := never(r, l); why != "" {
				typ := r.Proto.String()
				if r.SSL {
					typ = "hostssl"
				}
				ws = append(ws, Warning{Key: "acl.file", Msg: fmt.Sprintf("%s:%d: %s rule names listener %q, which %s: it never matches there",
					r.File, r.Line, typ, name, why)})
			}
		}
	}
	return ws
}

// never says why rule r can never decide for listener l, or "" when it
// can: a hostssl rule needs a verified client certificate, a tcp rule a
// TCP connection, a udp rule a datagram.
func never(r *acl.Rule, l *config.Listener) string {
	switch {
	case r.SSL && (l.TLS == nil || l.TLS.ClientCA == ""):
		return "verifies no client certificate (no tls.client_ca)"
	case r.Proto == acl.ProtoTCP && l.Mode.Proto() == "udp":
		return "takes UDP"
	case r.Proto == acl.ProtoUDP && l.Mode.Proto() == "tcp":
		return "takes TCP"
	}
	return ""
}

// checkDataPorts warns when an FTP data port range overlaps the kernel's
// ephemeral range: the kernel hands those ports to outgoing connections in
// runs, and a busy relay then finds its data ports taken.
func checkDataPorts(ports [2]uint16, key string, k Kernel) []Warning {
	if k.EphemeralFirst == 0 || ports[0] == 0 || ports[0] > k.EphemeralLast || ports[1] < k.EphemeralFirst {
		return nil
	}
	return []Warning{{Key: key, Msg: fmt.Sprintf("%s overlaps the kernel's ephemeral port range %d-%d (net.ipv4.ip_local_port_range): outgoing connections can take data ports, and clients then get 425",
		config.FormatPortRange(ports[0], ports[1]), k.EphemeralFirst, k.EphemeralLast)}}
}

// checkLocal warns when a listener without freebind names a listen address
// that none of the box's interfaces has: it cannot bind until the address
// arrives, which on the BACKUP of an HA pair is only after a failover. The
// same relay.yaml serves both boxes, so the fix is freebind, not another
// address. Wildcard and loopback addresses are always there.
func checkLocal(l *config.Listener, key string, k Kernel) []Warning {
	if l.Freebind || k.Addrs == nil || len(l.Listen) == 0 {
		return nil
	}
	ap, err := netip.ParseAddrPort(l.Listen[0])
	if err != nil {
		return nil
	}
	a := ap.Addr().Unmap()
	if a.IsUnspecified() || a.IsLoopback() || slices.Contains(k.Addrs, a) {
		return nil
	}
	return []Warning{{Key: key, Msg: fmt.Sprintf("%s is not an address of this box: the listener cannot bind until it has it; on the backup of an HA pair set freebind: true", a)}}
}

// checkOwnUpstream warns when a wildcard listener's upstream is one of this
// box's interface addresses on the listener's own port: the connection
// arrives at the listener again, round and round until max_conns or the
// descriptors run out. config refuses the loopback and the listen address
// itself; which other addresses are this box's only the kernel knows.
func checkOwnUpstream(l *config.Listener, key string, k Kernel) []Warning {
	for i, ups := range l.Upstreams {
		if i >= len(l.Listen) {
			break
		}
		ap, err := netip.ParseAddrPort(l.Listen[i])
		if err != nil || !ap.Addr().Unmap().IsUnspecified() {
			return nil
		}
		for _, u := range ups {
			up, err := netip.ParseAddrPort(u)
			if err == nil && up.Port() == ap.Port() && slices.Contains(k.Addrs, up.Addr().Unmap()) {
				return []Warning{{Key: key, Msg: fmt.Sprintf("%s is an address of this box on this listener's own port (%s): every connection would loop back into the relay", u, l.Listen[i])}}
			}
		}
	}
	return nil
}
