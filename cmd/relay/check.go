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
	proto := fs.String("proto", "tcp", "protocol for -acl-test: tcp or udp")
	cn := fs.String("cn", "", "client certificate `name` for -acl-test on a TLS listener (hostssl lines); empty: no certificate")
	strict := fs.Bool("strict", false, "fail (exit 1) on warnings too")
	resolveNames := fs.Bool("resolve", false, "resolve every upstream host name now and report failures (exit 1)")
	nameserver := fs.String("nameserver", "", "for -resolve: ask this `ip:port` instead of the nameservers of /etc/resolv.conf")
	load, ok := loader(fs, args)
	if !ok {
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
	if *listener == "" {
		fmt.Fprintln(stderr, "relay check: -acl-test needs -listener NAME")
		return 2
	}
	if *listener == config.AdminACLName {
		if *cn != "" {
			fmt.Fprintln(stderr, "relay check: -cn: the admin endpoint does not terminate TLS, so no certificate reaches its ACL")
			return 2
		}
		return explainAdmin(stdout, stderr, cfg, list, *aclTest)
	}
	l := cfg.Lookup(*listener)
	if l == nil {
		fmt.Fprintf(stderr, "relay check: -listener %q is not defined in %s\n", *listener, cfg.Path)
		return 2
	}
	if l.TLS != nil {
		return explainTLS(stdout, stderr, list, *aclTest, *listener, *cn)
	}
	if *cn != "" {
		fmt.Fprintf(stderr, "relay check: -cn: listener %q does not terminate TLS (no tls section), so no certificate reaches its ACL\n", *listener)
		return 2
	}
	return explain(stdout, stderr, list, *aclTest, *listener, *proto)
}

// explainTLS prints the deciding line for a TLS client presenting a
// certificate named cn (none when empty).
func explainTLS(stdout, stderr io.Writer, list *acl.List, addr, listener, cn string) int {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		fmt.Fprintf(stderr, "relay check: -acl-test: %v\n", err)
		return 2
	}
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
func explainAdmin(stdout, stderr io.Writer, cfg *config.Config, list *acl.List, addr string) int {
	if cfg.Admin.Listen == "" {
		fmt.Fprintf(stderr, "relay check: -listener admin: the admin endpoint is off (admin.listen is empty in %s)\n", cfg.Path)
		return 2
	}
	if list != nil && !daemon.AdminRulesApply(cfg.Admin.Listen, list) {
		if _, err := netip.ParseAddr(addr); err != nil {
			fmt.Fprintf(stderr, "relay check: -acl-test: %v\n", err)
			return 2
		}
		fmt.Fprintf(stdout, "allow: the admin endpoint listens on loopback (%s) and %s does not name admin, so whoever reaches it may\n",
			cfg.Admin.Listen, cfg.ACLPath)
		return 0
	}
	return explain(stdout, stderr, list, addr, config.AdminACLName, "tcp")
}

func explain(stdout, stderr io.Writer, list *acl.List, addr, listener, proto string) int {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		fmt.Fprintf(stderr, "relay check: -acl-test: %v\n", err)
		return 2
	}
	var p acl.Proto
	switch proto {
	case "tcp":
		p = acl.ProtoTCP
	case "udp":
		p = acl.ProtoUDP
	default:
		fmt.Fprintf(stderr, "relay check: -proto %q: want tcp or udp\n", proto)
		return 2
	}
	if list == nil {
		fmt.Fprintln(stdout, "allow: no acl section")
		return 0
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
