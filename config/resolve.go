package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/forward"
)

// resolve checks the decoded file schema and builds the runtime Config,
// reporting every problem to p. The result is meaningful only if p stays
// empty.
func resolve(fc *fileConfig, p *problems) *Config {
	cfg := &Config{
		Log:           resolveLog(fc.Log, p),
		Admin:         Admin{Listen: DefaultAdminListen},
		ShutdownGrace: nonNegative(fc.ShutdownGrace, DefaultShutdownGrace, "shutdown_grace", p),
		Reload:        Reload{HardStopAfter: nonNegative(fc.Reload.HardStopAfter, 0, "reload.hard_stop_after", p)},
	}
	var binds []binding
	if fc.Admin.Listen != nil {
		cfg.Admin.Listen = *fc.Admin.Listen
	}
	if cfg.Admin.Listen != "" {
		if b, ok := adminBinding(cfg.Admin.Listen, p); ok {
			binds = append(binds, b)
		}
	}
	cfg.Admin.Hosts = adminHosts(fc.Admin.Hosts, p)
	if fc.ACL.File != nil {
		cfg.ACLFile = *fc.ACL.File
		cfg.ACLPath = filePath(filepath.Dir(p.src.file), cfg.ACLFile)
		if cfg.ACLFile == "" {
			p.add("acl.file", "missing or empty: name the ACL file, or remove the acl section to let every source connect")
		}
	}
	defs := resolveDefaults(fc.Defaults, p)

	if len(fc.Listeners) == 0 {
		p.add("listeners", "no listeners: relay needs at least one to do anything")
	}
	firstUse := make(map[string]string) // listener name -> path of its first use
	for i := range fc.Listeners {
		path := indexPath("listeners", i)
		l, lb := resolveListener(&fc.Listeners[i], path, defs, p)
		if prev, dup := firstUse[l.Name]; dup && l.Name != "" {
			p.addf(path+".name", "name %q is already used by %s", l.Name, prev)
		} else {
			firstUse[l.Name] = path
		}
		cfg.Listeners = append(cfg.Listeners, l)
		binds = append(binds, lb...)
	}
	checkOverlaps(binds, p)
	checkLoops(cfg.Listeners, p)
	return cfg
}

func resolveLog(fl fileLog, p *problems) Log {
	l := Log{Level: zerolog.InfoLevel, Format: "auto"}
	if fl.Level != nil {
		switch *fl.Level {
		case "debug":
			l.Level = zerolog.DebugLevel
		case "info":
			l.Level = zerolog.InfoLevel
		case "warn":
			l.Level = zerolog.WarnLevel
		case "error":
			l.Level = zerolog.ErrorLevel
		default:
			p.addf("log.level", "unknown level %q (want debug, info, warn or error)", *fl.Level)
		}
	}
	if fl.Format != nil {
		switch *fl.Format {
		case "auto", "json", "console":
			l.Format = *fl.Format
		default:
			p.addf("log.format", "unknown format %q (want auto, json or console)", *fl.Format)
		}
	}
	return l
}

// adminBinding checks admin.listen: one port, not 0, on an IP address.
func adminBinding(listen string, p *problems) (binding, bool) {
	hp, err := ParseHostPorts(listen)
	if err != nil {
		p.add("admin.listen", err.Error())
		return binding{}, false
	}
	addr, err := checkListenHost(hp.Host)
	if err != nil {
		p.add("admin.listen", err.Error())
		return binding{}, false
	}
	if err := checkTCPListenAddr(addr); err != nil {
		p.add("admin.listen", err.Error())
		return binding{}, false
	}
	if hp.Len() != 1 {
		p.addf("admin.listen", "%q is a port range; the admin endpoint takes one port", listen)
		return binding{}, false
	}
	if hp.First == 0 {
		// The kernel would pick a free port, and no browser or scraper
		// would know which (listeners are refused it the same way).
		p.addf("admin.listen", "%q: port 0 is not a port anyone can be told; name the port the status page and scrapers use", listen)
		return binding{}, false
	}
	return binding{path: "admin.listen", what: "the admin endpoint", proto: "tcp",
		addr: addr, first: hp.First, last: hp.Last}, true
}

// adminHosts checks admin.hosts: the names, besides its IP addresses,
// localhost and the machine's hostname, that the admin endpoint answers to.
// They come back in lower case without a trailing dot, as admin compares
// them.
func adminHosts(hosts []string, p *problems) []string {
	var out []string
	for i, h := range hosts {
		path := indexPath("admin.hosts", i)
		name, port, err := net.SplitHostPort(h)
		if err != nil {
			name, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), ""
		}
		switch {
		case h == "":
			p.add(path, "empty; write a name such as status.venue.example")
		case strings.Contains(h, "/"):
			p.addf(path, "%q is a URL or a path; write the name alone, such as status.venue.example", h)
		case strings.Contains(h, "*"):
			p.addf(path, "%q: wildcards are not supported; list each name the endpoint is opened or scraped by", h)
		case isIPAddress(name):
			p.addf(path, "%q is an IP address, which the admin endpoint always answers to; list names only", h)
		case port != "" || err == nil:
			p.addf(path, "%q has a port; write the name alone (it is accepted on any port)", h)
		case !isDNSName(h):
			p.addf(path, "%q is not a host name (letters, digits and inner hyphens, separated by dots)", h)
		default:
			out = append(out, strings.TrimSuffix(strings.ToLower(h), "."))
		}
	}
	return out
}

// isIPAddress reports whether s is an IPv4 or IPv6 address.
func isIPAddress(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// defaults are the per-listener values after the defaults section.
type defaults struct {
	connectTimeout, idleTimeout time.Duration
	maxConns                    int
}

func resolveDefaults(fd fileDefaults, p *problems) defaults {
	return defaults{
		connectTimeout: positive(fd.ConnectTimeout, forward.DefaultConnectTimeout, "defaults.connect_timeout", p),
		idleTimeout:    positive(fd.IdleTimeout, forward.DefaultIdleTimeout, "defaults.idle_timeout", p),
		maxConns:       atLeast(fd.MaxConns, DefaultMaxConns, 0, "defaults.max_conns", p),
	}
}

// positive returns d, or def when d is absent, and refuses zero or less: a
// zero timeout would mean "give up at once" to the packages below.
func positive(d *duration, def time.Duration, path string, p *problems) time.Duration {
	if d == nil {
		return def
	}
	if *d <= 0 {
		p.addf(path, "must be above zero, got %s", formatDuration(time.Duration(*d)))
	}
	return time.Duration(*d)
}

// nonNegative is positive for durations where zero means "off".
func nonNegative(d *duration, def time.Duration, path string, p *problems) time.Duration {
	if d == nil {
		return def
	}
	if *d < 0 {
		p.addf(path, "must not be negative, got %s", formatDuration(time.Duration(*d)))
	}
	return time.Duration(*d)
}

// atLeast returns n, or def when n is absent, and refuses values below lo.
func atLeast(n *int, def, lo int, path string, p *problems) int {
	if n == nil {
		return def
	}
	if *n < lo {
		p.add(path, fmt.Sprintf("must be at least %d, got %d", lo, *n))
	}
	return *n
}
