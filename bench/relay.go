package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// ftpDataPorts is the size of the relay's passive data port range. The
// small-transfer loop opens a data port per file; a range this wide keeps
// random picks from landing on a port still in TIME_WAIT.
const ftpDataPorts = 1000

// buildRelay compiles ./cmd/relay of the module the bench runs in, the way
// `make build` does, into dir. It returns the binary and the git revision
// it was built from ("" outside git).
func buildRelay(dir string) (bin, rev string, err error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	root, err := moduleRoot(goBin)
	if err != nil {
		return "", "", err
	}
	out := filepath.Join(dir, "relay")
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", out, "./cmd/relay")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build ./cmd/relay: %w\n%s", err, b)
	}
	return out, gitRevision(root), nil
}

// gitRevision names the commit of the tree in root, with "+dirty" when
// files differ from it.
func gitRevision(root string) string {
	b, err := exec.Command("git", "-C", root, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(b))
	if err := exec.Command("git", "-C", root, "diff", "--quiet", "HEAD", "--").Run(); err != nil {
		rev += "+dirty"
	}
	return rev
}

// moduleRoot is the directory of the go.mod governing the working directory.
func moduleRoot(goBin string) (string, error) {
	b, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(b))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run the bench inside the relay module (go run ./bench)")
	}
	return filepath.Dir(mod), nil
}

// relayFwd is a relay binary under test: the one built from this tree
// (the "relay" column), or an earlier one measured in the same runs for
// an A/B comparison (-baseline, the "baseline" column).
type relayFwd struct {
	bin   string
	label string // the column; "" is "relay"
	admin bool   // give each process an admin endpoint (the soak scrapes it)
}

func (r relayFwd) name() string {
	if r.label != "" {
		return r.label
	}
	return "relay"
}

func (relayFwd) unsupported(string) string { return "" }

func (r relayFwd) start(e *env, routes []route) (*instance, error) {
	in, specs, err := listenPorts(e, r.name(), routes)
	if err != nil {
		return nil, err
	}
	var cfg, venue strings.Builder
	var venueSpecs []portSpec
	var adminAddrs [2]string // box office (or the only process), venue
	head := func(i int) (string, error) {
		if !r.admin {
			return relayConfigHead, nil
		}
		port, err := e.ports.one()
		if err != nil {
			return "", err
		}
		adminAddrs[i] = loopback(port)
		return strings.Replace(relayConfigHead, `listen: ""`, "listen: "+adminAddrs[i], 1), nil
	}
	h, err := head(0)
	if err != nil {
		return nil, err
	}
	cfg.WriteString(h)
	for _, rt := range routes {
		if rt.mode == "tunnel" {
			if venue.Len() == 0 {
				h, err := head(1)
				if err != nil {
					return nil, err
				}
				venue.WriteString(h)
			}
			tunnel, err := writeRelayTunnel(&cfg, &venue, e, rt, in)
			if err != nil {
				return nil, err
			}
			venueSpecs = append(venueSpecs, tunnel...)
			continue
		}
		data, err := writeRelayListener(&cfg, e, rt, in.addr(rt.name))
		if err != nil {
			return nil, err
		}
		if data[0] != 0 {
			in.ftpData = data
		}
	}
	path := filepath.Join(e.dir, r.name()+".yaml")
	var parts []part // the venue first, as a server before its clients
	in.configs, in.admins = nil, nil
	if venue.Len() > 0 {
		vpath := filepath.Join(e.dir, r.name()+"-venue.yaml")
		parts = append(parts, part{suffix: "-venue", specs: venueSpecs, cfgPath: vpath, cfgText: venue.String(),
			argv: []string{r.bin, "-config", vpath}})
		in.configs, in.admins = append(in.configs, vpath), append(in.admins, adminAddrs[1])
	}
	parts = append(parts, part{specs: specs, cfgPath: path, cfgText: cfg.String(), argv: []string{r.bin, "-config", path}})
	in.configs, in.admins = append(in.configs, path), append(in.admins, adminAddrs[0])
	return launchParts(e, in, parts...)
}

// relayConfigHead is the part of the relay's config that does not depend on
// the scenario. Access logs are at info level; the bench runs at warn so the
// relay is measured like the peers, which log nothing per connection here.
const relayConfigHead = `# written by go run ./bench
log:
  level: warn
  format: json
admin:
  listen: ""
defaults:
  connect_timeout: 5s
  idle_timeout: 1h
  max_conns: 0
shutdown_grace: 1s
listeners:
`

// writeRelayTunnel appends both ends of a tunnel route: the box office's
// raw listener originating TLS to box, the venue's raw listener
// terminating it (which forwards to the backend) and a plain raw listener
// to the same backend to venue, each config for a process of its own, as
// the two ends run on two machines. It records the venue's addresses in in
// and returns their ports.
func writeRelayTunnel(box, venue *strings.Builder, e *env, rt route, in *instance) ([]portSpec, error) {
	pki, err := tunnelPKI(e)
	if err != nil {
		return nil, err
	}
	port, err := e.ports.one()
	if err != nil {
		return nil, err
	}
	plain, err := e.ports.one()
	if err != nil {
		return nil, err
	}
	in.addrs[rt.name+venueSuffix] = loopback(port)
	in.addrs[rt.name+plainSuffix] = loopback(plain)
	fmt.Fprintf(venue, "  - name: %s-venue\n    mode: raw\n    listen: %s\n    upstream: %s\n"+
		"    tls: {cert: %s, key: %s, client_ca: %s}\n", rt.name, loopback(port), rt.upstream, pki.venueCrt, pki.venueKey, pki.ca)
	fmt.Fprintf(venue, "  - name: %s-plain\n    mode: raw\n    listen: %s\n    upstream: %s\n", rt.name, loopback(plain), rt.upstream)
	fmt.Fprintf(box, "  - name: %s\n    mode: raw\n    listen: %s\n    upstream: %s\n"+
		"    upstream_tls: {ca: %s, cert: %s, key: %s}\n", rt.name, in.addr(rt.name), loopback(port), pki.ca, pki.boxCrt, pki.boxKey)
	return []portSpec{{proto: "tcp", port: port}, {proto: "tcp", port: plain}}, nil
}

// benchUDPSessionTimeout is the udp listeners' session_timeout: how long a
// session outlives its client's last datagram, which bounds how long the
// soak waits for them to end (and an upgrade's old process to exit).
const benchUDPSessionTimeout = 30 * time.Second

// writeRelayListener appends one listener to the relay's config and returns
// the FTP data port range it gave an ftp listener.
func writeRelayListener(b *strings.Builder, e *env, rt route, listen string) ([2]int, error) {
	fmt.Fprintf(b, "  - name: %s\n    mode: %s\n    listen: %s\n    upstream: %s\n",
		rt.name, rt.mode, listen, rt.upstream)
	switch rt.mode {
	case "ftp":
		first, err := e.ports.block(ftpDataPorts)
		if err != nil {
			return [2]int{}, err
		}
		last := first + ftpDataPorts - 1
		fmt.Fprintf(b, "    ftp:\n      data_ports: \"%d-%d\"\n      data_timeout: 10s\n", first, last)
		return [2]int{first, last}, nil
	case "udp":
		fmt.Fprintf(b, "    udp:\n      session_timeout: %s\n", benchUDPSessionTimeout)
	case "raw":
		b.WriteString("    raw:\n      exclusive: true\n      queue_timeout: 5s\n")
	}
	return [2]int{}, nil
}
