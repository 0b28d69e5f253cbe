package main

import (
	"fmt"
	"path/filepath"
	"strings"
)

// rinetd is the classic single-process redirector. Version 0.73 waits in
// pselect(2), whose descriptor sets are made for FD_SETSIZE (1 024).
type rinetd struct {
	bin string
}

func (rinetd) name() string { return "rinetd" }

func (rinetd) unsupported(mode string) string {
	switch mode {
	case "ftp":
		return "does not rewrite PASV/EPSV"
	case "tunnel":
		return noTunnel
	}
	return ""
}

func (r rinetd) start(e *env, routes []route) (*instance, error) {
	in, specs, err := listenPorts(e, "rinetd", routes)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	for _, rt := range routes {
		lhost, lport, _ := strings.Cut(in.addr(rt.name), ":")
		uhost, uport, _ := strings.Cut(rt.upstream, ":")
		if rt.proto() == "udp" {
			fmt.Fprintf(&b, "%s %s/udp %s %s/udp\n", lhost, lport, uhost, uport)
		} else {
			fmt.Fprintf(&b, "%s %s %s %s\n", lhost, lport, uhost, uport)
		}
	}
	cfg := filepath.Join(e.dir, "rinetd.conf")
	return launch(e, in, specs, cfg, b.String(), r.bin, "-f", "-c", cfg)
}
