package main

import (
	"fmt"
	"path/filepath"
	"strings"
)

// haproxy is HAProxy in mode tcp with splice forced from the first byte:
// `option splice-auto` would splice only after seconds of a bulk stream.
type haproxy struct {
	bin string
}

func (haproxy) name() string { return "haproxy" }

func (haproxy) unsupported(mode string) string {
	switch mode {
	case "udp":
		return "no UDP proxying"
	case "ftp":
		return "does not rewrite PASV/EPSV"
	case "tunnel":
		return noTunnel
	}
	return ""
}

func (h haproxy) start(e *env, routes []route) (*instance, error) {
	in, specs, err := listenPorts(e, "haproxy", routes)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	// maxconn and maxpipes size HAProxy's descriptor table, which must fit
	// the limit it inherits; the idle scenario fills it. Pipes are only
	// held while data moves: 128 covers the 8-stream run.
	fmt.Fprintf(&b, `global
    maxconn %[1]d
    maxpipes 128
defaults
    mode tcp
    maxconn %[1]d
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    option splice-request
    option splice-response
`, e.maxConns()+100)
	for _, r := range routes {
		fmt.Fprintf(&b, "listen %s\n    bind %s\n    server s1 %s\n", r.name, in.addr(r.name), r.upstream)
	}
	cfg := filepath.Join(e.dir, "haproxy.cfg")
	// -db: stay in the foreground, so the PID is HAProxy's own.
	return launch(e, in, specs, cfg, b.String(), h.bin, "-db", "-f", cfg)
}
