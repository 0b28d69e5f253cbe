package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/edgerelay/relay/acl"
	"github.com/edgerelay/relay/certs"
	"github.com/edgerelay/relay/config"
	"github.com/edgerelay/relay/daemon"
	"github.com/edgerelay/relay/lint"
	"github.com/edgerelay/relay/upstream"
)

// check validates a config and its ACL, prints the resolved listeners, and,
// with -acl-test, which ACL line decides an address on a listener. It
// exits 1 for the config (or -strict's warnings, -resolve's failures) and
// 2 for a usage error, -acl-test's included.
func check(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relay check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	aclTest := fs.String("acl-test", "", "client `address` to test against the ACL")
	listener := fs.String("listener", "", "listener `name` for -acl-test")
	proto := fs.String("proto", "", "protocol for -acl-test: tcp or udp (default: the listener's)")
	cn := fs.String("cn", "", "client certificate `name` for -acl-test on a TLS listener (hostssl lines); empty: no certificate")
	strict := fs.Bool("strict", false, "fail (exit 1) on warnings too")
	resolveNames := fs.Bool("resolve", false, "resolve every upstream host name now and report failures (exit 1)")
	nameserver := fs.String("nameserver", "", "for -resolve: ask this `ip:port` instead of the nameservers of /etc/resolv.conf")
	load, ok := loader(fs, args)
	if !ok {
		return 2
	}
	if msg := strayCheckFlags(fs, *aclTest, *resolveNames); msg != "" {
		fmt.Fprintf(stderr, "relay check: %s\n", msg)
		return 2
	}
	cfg, err := load()
	if err != nil {
		fmt.Fprintf(stderr, "relay check: %v\n", err)
		return 1
	}
	var list *acl.List // nil: no ACL, every source may connect
	if cfg.ACLPath != "" {
		list, err = acl.LoadFile(cfg.ACLPath, acl.Options{Listeners: cfg.ACLNames()})
	}
	if err != nil {
		fmt.Fprintf(stderr, "relay check: acl.file: %v\n", err)
		return 1
	}
	// The same warnings relay logs when it starts or reloads.
	warnings := append(lint.Check(cfg, list, lint.ReadKernel()), certWarnings(cfg, time.Now())...)
	for _, w := range warnings {
		fmt.Fprintf(stderr, "relay check: warning: %s\n", w)
	}
	if *strict && len(warnings) > 0 {
		fmt.Fprintf(stderr, "relay check: %d %s, and -strict makes them errors\n",
			len(warnings), plural(len(warnings), "warning"))
		return 1
	}
	if *resolveNames {
		var servers []string
		if *nameserver != "" {
			servers = []string{*nameserver}
		}
		return resolve(stdout, stderr, cfg, servers)
	}
	if *aclTest == "" {
		if err := cfg.Describe(stdout); err != nil {
			fmt.Fprintf(stderr, "relay check: %v\n", err)
			return 1
		}
		if cfg.ACLPath != "" {
			fmt.Fprintf(stdout, "acl: %s\n", cfg.ACLPath)
		} else {
			fmt.Fprintln(stdout, "acl: none (every source may connect)")
		}
		return 0
	}
	return explainACLTest(stdout, stderr, cfg, list, *aclTest, *listener, *proto, *cn)
}

// strayCheckFlags names a flag of -acl-test or -resolve given without it,
// or -acl-test beside -resolve, which would otherwise be ignored in
// silence, or a -nameserver that is not an ip:port; "" when there is none.
func strayCheckFlags(fs *flag.FlagSet, aclTest string, resolve bool) string {
	var msg string
	fs.Visit(func(f *flag.Flag) {
		switch {
		case msg != "":
		case aclTest == "" && (f.Name == "listener" || f.Name == "proto" || f.Name == "cn"):
			msg = "-" + f.Name + " is for -acl-test ADDR"
		case !resolve && f.Name == "nameserver":
			msg = "-nameserver is for -resolve"
		case resolve && f.Name == "acl-test":
			msg = "-resolve and -acl-test are separate checks: give one at a time"
		case f.Name == "nameserver":
			// An IP: a name would itself be looked up through the system's resolver.
			if _, err := netip.ParseAddrPort(f.Value.String()); err != nil {
				msg = fmt.Sprintf("-nameserver %q: want the server's ip:port, like 127.0.0.1:53", f.Value)
			}
		}
	})
	return msg
}

// explainACLTest prints which ACL line decides about a client at addr on the
// listener called name (or the admin endpoint). A client of a udp listener
// is a UDP source, of any other a TCP client: proto may only agree.
func explainACLTest(stdout, stderr io.Writer, cfg *config.Config, list *acl.List, addr, name, proto, cn string) int {
	if name == "" {
		fmt.Fprintln(stderr, "relay check: -acl-test needs -listener NAME")
		return 2
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		fmt.Fprintf(stderr, "relay check: -acl-test %q is not an IP address (want one client address, like 192.168.1.99 or 2001:db8::7)\n", addr)
		return 2
	}
	var l *config.Listener
	takes := "tcp" // the admin endpoint
	if name != config.AdminACLName {
		if l = cfg.Lookup(name); l == nil {
			fmt.Fprintf(stderr, "relay check: -listener %q is not defined in %s\n", name, cfg.Path)
			return 2
		}
		takes = l.Mode.Proto()
	}
	switch proto {
	case "", takes:
	case "tcp", "udp":
		fmt.Fprintf(stderr, "relay check: -proto %s: listener %q takes %s only\n", proto, name, takes)
		return 2
	default:
		fmt.Fprintf(stderr, "relay check: -proto %q: want tcp or udp\n", proto)
		return 2
	}
	switch {
	case l == nil && cn != "":
		fmt.Fprintln(stderr, "relay check: -cn: the admin endpoint does not terminate TLS, so no certificate reaches its ACL")
		return 2
	case l == nil:
		return explainAdmin(stdout, stderr, cfg, list, a)
	case l.TLS != nil:
		return explainTLS(stdout, list, a, name, cn)
	case cn != "":
		fmt.Fprintf(stderr, "relay check: -cn: listener %q does not terminate TLS (no tls section), so no certificate reaches its ACL\n", name)
		return 2
	}
	return explain(stdout, list, a, name, takes)
}

// explainTLS prints the deciding line for a TLS client presenting a
// certificate named cn (none when empty).
func explainTLS(stdout io.Writer, list *acl.List, a netip.Addr, listener, cn string) int {
	if list == nil {
		fmt.Fprintln(stdout, "allow: no acl section")
		return 0
	}
	fmt.Fprintln(stdout, list.ExplainTLS(listener, a, cn))
	return 0
}

// explainAdmin prints who decides about addr on the admin endpoint: the
// ACL's line, or why no line does (the endpoint serves loopback and the
// file does not name it).
func explainAdmin(stdout, stderr io.Writer, cfg *config.Config, list *acl.List, a netip.Addr) int {
	if cfg.Admin.Listen == "" {
		fmt.Fprintf(stderr, "relay check: -listener admin: the admin endpoint is off (admin.listen is empty in %s)\n", cfg.Path)
		return 2
	}
	if list != nil && !daemon.AdminRulesApply(cfg.Admin.Listen, list) {
		fmt.Fprintf(stdout, "allow: the admin endpoint listens on loopback (%s) and %s does not name admin, so whoever reaches it may\n",
			cfg.Admin.Listen, cfg.ACLPath)
		return 0
	}
	return explain(stdout, list, a, config.AdminACLName, "tcp")
}

// explain prints the deciding line for a client at a over proto ("tcp" or
// "udp").
func explain(stdout io.Writer, list *acl.List, a netip.Addr, listener, proto string) int {
	if list == nil {
		fmt.Fprintln(stdout, "allow: no acl section")
		return 0
	}
	p := acl.ProtoTCP
	if proto == "udp" {
		p = acl.ProtoUDP
	}
	fmt.Fprintln(stdout, list.Explain(listener, p, a))
	return 0
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// resolve asks DNS for every host name among the upstreams, as the relay
// would (its own client, servers nil: /etc/resolv.conf's), and prints one
// line per name: its addresses and TTL, or why it failed. Any failure is
// exit 1.
func resolve(stdout, stderr io.Writer, cfg *config.Config, servers []string) int {
	names := cfg.UpstreamNames()
	if len(names) == 0 {
		fmt.Fprintln(stdout, "resolve: no upstream is a host name")
		return 0
	}
	r := upstream.NewResolver(upstream.ResolverConfig{Servers: servers})
	defer r.Close()
	failed := 0
	for _, name := range names {
		ans, err := r.Resolve(context.Background(), name)
		if err != nil {
			failed++
			fmt.Fprintf(stderr, "relay check: %v\n", err) // the error names the name
			continue
		}
		addrs := make([]string, len(ans.Addrs))
		for i, a := range ans.Addrs {
			addrs[i] = a.String()
		}
		fmt.Fprintf(stdout, "resolve %s: %s (ttl %s)\n", name, strings.Join(addrs, ", "), ans.TTL)
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "relay check: %d of %d upstream %s did not resolve\n", failed, len(names), plural(len(names), "name"))
		return 1
	}
	return 0
}

// certWarnings names each certificate of cfg's TLS sections that is not
// valid at now: relay puts it in force all the same (the files hold no
// other) and warns, and every peer refuses it.
func certWarnings(cfg *config.Config, now time.Time) []lint.Warning {
	var out []lint.Warning
	check := func(key, file string) {
		c, err := certs.ReadCert(file)
		switch {
		case err != nil: // config has reported an unreadable file already
		case now.After(c.NotAfter):
			out = append(out, lint.Warning{Key: key, Msg: fmt.Sprintf("%s expired on %s: every peer refuses it; renew it",
				file, c.NotAfter.UTC().Format(time.DateOnly))})
		case now.Before(c.NotBefore):
			out = append(out, lint.Warning{Key: key, Msg: fmt.Sprintf("%s is not valid before %s: every peer refuses it until then",
				file, c.NotBefore.UTC().Format(time.RFC3339))})
		}
	}
	for i, l := range cfg.Listeners {
		if l.TLS != nil {
			check(fmt.Sprintf("listeners[%d].tls.cert", i), l.TLS.Cert)
		}
		if l.UpstreamTLS != nil && l.UpstreamTLS.Cert != "" {
			check(fmt.Sprintf("listeners[%d].upstream_tls.cert", i), l.UpstreamTLS.Cert)
		}
	}
	return out
}
