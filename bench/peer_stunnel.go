package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// stunnel is stunnel4 carrying the tunnel scenario: two processes, the box
// office's client services and the venue's server services, as the issue
// asks and as the relay runs them, so CPU compares like for like. TLS 1.3, client certificates required and verified on the venue
// side, the venue's certificate verified by IP on the box-office side,
// TCP_NODELAY on every socket, session resumption at stunnel's defaults.
// Both sides use AES-128-GCM: crypto/tls picks it on a CPU with AES
// instructions, while OpenSSL's own order puts AES-256-GCM first (14 AES
// rounds to 10), so stunnel4 is told to use the relay's cipher.
type stunnel struct {
	bin string
}

func (stunnel) name() string { return "stunnel4" }

func (stunnel) unsupported(mode string) string {
	if mode != "tunnel" {
		return "a TLS tunnel only"
	}
	return ""
}

func (s stunnel) start(e *env, routes []route) (*instance, error) {
	in, specs, err := listenPorts(e, "stunnel4", routes)
	if err != nil {
		return nil, err
	}
	pki, err := tunnelPKI(e)
	if err != nil {
		return nil, err
	}
	// The box office and the venue are two processes, as on two
	// machines (and as the relay's two ends run).
	var box, venueCfg strings.Builder
	var venueSpecs []portSpec
	for _, b := range []*strings.Builder{&box, &venueCfg} {
		b.WriteString("; written by go run ./bench\nforeground = yes\npid =\nsyslog = no\ndebug = 3\n")
		b.WriteString("socket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n")
	}
	for _, rt := range routes {
		venue, err := e.ports.one()
		if err != nil {
			return nil, err
		}
		in.addrs[rt.name+venueSuffix] = loopback(venue)
		venueSpecs = append(venueSpecs, portSpec{proto: "tcp", port: venue})
		fmt.Fprintf(&venueCfg, "\n[%s-venue]\naccept = %s\nconnect = %s\ncert = %s\nkey = %s\nCAfile = %s\n"+
			"verifyChain = yes\nrequireCert = yes\nsslVersionMin = TLSv1.3\nciphersuites = %s\n",
			rt.name, loopback(venue), rt.upstream, pki.venueCrt, pki.venueKey, pki.ca, stunnelCipher)
		fmt.Fprintf(&box, "\n[%s-box]\nclient = yes\naccept = %s\nconnect = %s\ncert = %s\nkey = %s\nCAfile = %s\n"+
			"verifyChain = yes\ncheckIP = 127.0.0.1\nsslVersionMin = TLSv1.3\nciphersuites = %s\n",
			rt.name, in.addr(rt.name), loopback(venue), pki.boxCrt, pki.boxKey, pki.ca, stunnelCipher)
	}
	boxPath := filepath.Join(e.dir, "stunnel.conf")
	venuePath := filepath.Join(e.dir, "stunnel-venue.conf")
	return launchParts(e, in,
		part{suffix: "-venue", specs: venueSpecs, cfgPath: venuePath, cfgText: venueCfg.String(), argv: []string{s.bin, venuePath}},
		part{specs: specs, cfgPath: boxPath, cfgText: box.String(), argv: []string{s.bin, boxPath}})
}

// stunnelCipher is the TLS 1.3 cipher suite the relay negotiates here.
const stunnelCipher = "TLS_AES_128_GCM_SHA256"

// stunnelVersion picks the "stunnel 5.68 ..." line of stunnel -version.
func stunnelVersion(bin string) string {
	out, _ := exec.Command(bin, "-version").CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "stunnel ") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}
