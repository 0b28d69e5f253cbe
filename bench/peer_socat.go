package main

import (
	"fmt"
	"strings"
	"time"
)

// socat forwards one port per process and forks a child per connection (per
// client, for UDP), the way it is used as a quick port-forwarder.
type socat struct {
	bin string
}

func (socat) name() string { return "socat" }

func (socat) unsupported(mode string) string {
	switch mode {
	case "ftp":
		return "does not rewrite PASV/EPSV"
	case "tunnel":
		return noTunnel
	}
	return ""
}

func (s socat) start(e *env, routes []route) (*instance, error) {
	in, specs, err := listenPorts(e, "socat", routes)
	if err != nil {
		return nil, err
	}
	for i, r := range routes {
		_, port, _ := strings.Cut(in.addr(r.name), ":")
		var from, to string
		if r.proto() == "udp" {
			from = fmt.Sprintf("UDP4-LISTEN:%s,bind=127.0.0.1,fork,reuseaddr", port)
			to = "UDP4:" + r.upstream
		} else {
			from = fmt.Sprintf("TCP4-LISTEN:%s,bind=127.0.0.1,fork,reuseaddr,backlog=4096", port)
			to = "TCP4:" + r.upstream
		}
		p, err := e.startProcess("socat-"+r.name, s.bin, from, to)
		if err != nil {
			in.stop()
			return nil, err
		}
		in.procs = append(in.procs, p)
		if err := p.waitListening(specs[i:i+1], 10*time.Second); err != nil {
			in.stop()
			return nil, err
		}
	}
	return in, nil
}
