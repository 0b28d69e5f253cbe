package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edgerelay/relay/certs"
)

// Addresses a tunnel forwarder adds beside each route's box-office side:
// the venue's TLS side, and (the relay only) the same backend through a
// plain raw listener, for the cost of TLS in one run.
const (
	venueSuffix = "@venue"
	plainSuffix = "@plain"
)

// tunnelScenario is the box-office tunnel: a plaintext client -> the box
// office's end (originates mutual TLS 1.3) -> the venue's end (terminates
// it) -> backend. Each forwarder runs the two ends as two processes, as
// on two machines (a relay process with the box office's listeners, one
// with the venue's; two stunnel4 processes); direct is the backend without
// a tunnel. Rows: bulk throughput and CPU per GB, printer status round
// trips over an established tunnel, short connections through the tunnel,
// and TLS handshakes per second at the venue's end, full and resumed.
type tunnelScenario struct {
	sunk    atomic.Int64
	sink    *tcpServer
	hash    *tcpServer
	printer *tcpServer
	echo    *tcpServer
	check   []byte
	block   []byte
}

func (*tunnelScenario) name() string { return "tunnel" }

func (*tunnelScenario) metrics() []metric {
	return []metric{
		{key: "gbps1", label: "tunnel, 1 stream", unit: "Gbit/s", higher: true, digits: 2},
		{key: "cpu1", label: "tunnel, 1 stream, CPU", unit: "s/GB", forwarderOnly: true, digits: 3},
		{key: "gbps8", label: "tunnel, 8 streams", unit: "Gbit/s", higher: true, digits: 2},
		{key: "cpu8", label: "tunnel, 8 streams, CPU", unit: "s/GB", forwarderOnly: true, digits: 3},
		{key: "p50", label: "tunnel, status round trip, median", unit: "µs", digits: 1},
		{key: "p99", label: "tunnel, status round trip, p99", unit: "µs", digits: 1},
		{key: "cps", label: "tunnel, connect + echo + close, 16 workers", unit: "conn/s", higher: true, digits: 0},
		{key: "full", label: "venue end, TLS full handshakes", unit: "conn/s", higher: true, forwarderOnly: true, digits: 0},
		{key: "resumed", label: "venue end, TLS resumed (tickets)", unit: "conn/s", higher: true, forwarderOnly: true, digits: 0},
		{key: "full_cpu", label: "venue end, full, forwarder CPU", unit: "µs/conn", forwarderOnly: true, digits: 0},
		{key: "resumed_cpu", label: "venue end, resumed, forwarder CPU", unit: "µs/conn", forwarderOnly: true, digits: 0},
		{key: "full_x25519", label: "venue end, full, client offers X25519 only", unit: "conn/s", higher: true, forwarderOnly: true, digits: 0},
		{key: "resumed_x25519", label: "venue end, resumed, client offers X25519 only", unit: "conn/s", higher: true, forwarderOnly: true, digits: 0},
		{key: "full_x25519_cpu", label: "venue end, full, X25519, forwarder CPU", unit: "µs/conn", forwarderOnly: true, digits: 0},
		{key: "resumed_x25519_cpu", label: "venue end, resumed, X25519, forwarder CPU", unit: "µs/conn", forwarderOnly: true, digits: 0},
		{key: "plain_gbps1", label: "plain raw (no TLS), 1 stream", unit: "Gbit/s", higher: true, forwarderOnly: true, digits: 2},
		{key: "plain_gbps8", label: "plain raw (no TLS), 8 streams", unit: "Gbit/s", higher: true, forwarderOnly: true, digits: 2},
		{key: "plain_cpu8", label: "plain raw (no TLS), 8 streams, CPU", unit: "s/GB", forwarderOnly: true, digits: 3},
		{key: "plain_p50", label: "plain raw (no TLS), status round trip, median", unit: "µs", forwarderOnly: true, digits: 1},
		{key: "plain_cps", label: "plain raw (no TLS), connect + echo + close", unit: "conn/s", higher: true, forwarderOnly: true, digits: 0},
	}
}

func (t *tunnelScenario) setup(e *env) ([]route, error) {
	servers := []struct {
		s      **tcpServer
		handle func(*net.TCPConn)
	}{{&t.sink, sink(&t.sunk)}, {&t.hash, hashReply}, {&t.printer, printer}, {&t.echo, echo}}
	for i, sv := range servers {
		var err error
		if *sv.s, err = listenTCP(sv.handle); err != nil {
			for _, prev := range servers[:i] {
				(*prev.s).close()
			}
			return nil, err
		}
	}
	t.check = randomBytes(e.scale.checkBytes, 3)
	t.block = randomBytes(256<<10, 4)
	if _, err := tunnelPKI(e); err != nil {
		t.teardown()
		return nil, err
	}
	return []route{
		{name: "tls-bulk", mode: "tunnel", upstream: t.sink.addr()},
		{name: "tls-check", mode: "tunnel", upstream: t.hash.addr()},
		{name: "tls-printer", mode: "tunnel", upstream: t.printer.addr()},
		{name: "tls-echo", mode: "tunnel", upstream: t.echo.addr()},
	}, nil
}

func (t *tunnelScenario) teardown() {
	for _, s := range []*tcpServer{t.sink, t.hash, t.printer, t.echo} {
		if s != nil {
			s.close()
		}
	}
}

func (*tunnelScenario) skip(fwd string) string {
	switch fwd {
	case "direct", "relay", "stunnel4":
		return ""
	}
	return noTunnel
}

func (*tunnelScenario) fresh() bool { return false }

func (t *tunnelScenario) measure(e *env, in *instance) (map[string]float64, error) {
	if err := hashTransfer(in.addr("tls-check"), t.check, 30*time.Second); err != nil {
		return nil, fmt.Errorf("SHA-256 transfer: %w", err)
	}
	out := map[string]float64{}
	if err := t.path(e, in, "", "", out); err != nil {
		return out, err
	}
	if venue := in.addr("tls-echo" + venueSuffix); venue != "" {
		pki, err := tunnelPKI(e)
		if err != nil {
			return out, err
		}
		for _, key := range []string{"full", "resumed", "full_x25519", "resumed_x25519"} {
			if err := venueHandshakes(e, in, venue, pki, key, out); err != nil {
				return out, fmt.Errorf("%s handshakes: %w", key, err)
			}
		}
	}
	if in.addr("tls-bulk"+plainSuffix) != "" {
		if err := t.path(e, in, plainSuffix, "plain_", out); err != nil {
			return out, fmt.Errorf("plain raw: %w", err)
		}
	}
	return out, nil
}

// measureJoint times the status round trips over an established tunnel
// (and the plain raw path's, for the relay) through every forwarder in
// turns.
func (t *tunnelScenario) measureJoint(e *env, ins []*instance) ([]map[string]float64, []error) {
	var targets []rttTarget
	var owner []int // targets[k] belongs to ins[owner[k]]
	for i, in := range ins {
		targets = append(targets, rttTarget{addr: in.addr("tls-printer")})
		owner = append(owner, i)
		if plain := in.addr("tls-printer" + plainSuffix); plain != "" {
			targets = append(targets, rttTarget{addr: plain, prefix: "plain_"})
			owner = append(owner, i)
		}
	}
	got, gotErrs := statusRTTs(targets, e.scale.rawSamples)
	vals := make([]map[string]float64, len(ins))
	errs := make([]error, len(ins))
	for k, i := range owner {
		if gotErrs[k] != nil {
			what := "status round trips"
			if targets[k].prefix != "" {
				what = "plain raw status round trips"
			}
			errs[i] = errors.Join(errs[i], fmt.Errorf("%s: %w", what, gotErrs[k]))
			continue
		}
		if vals[i] == nil {
			vals[i] = map[string]float64{}
		}
		for key, v := range got[k] {
			vals[i][key] = v
		}
	}
	return vals, errs
}

// path measures throughput, CPU and short connections through the routes'
// addresses with suffix, storing them under prefix. The status round trips
// are measureJoint's.
func (t *tunnelScenario) path(e *env, in *instance, suffix, prefix string, out map[string]float64) error {
	for _, n := range []int{1, 8} {
		gbps, cpu, err := uploadStreams(e, in, in.addr("tls-bulk"+suffix), n, &t.sunk, t.block)
		if err != nil {
			return fmt.Errorf("%d streams: %w", n, err)
		}
		out[fmt.Sprintf("%sgbps%d", prefix, n)] = gbps
		if in.hasProcess() {
			out[fmt.Sprintf("%scpu%d", prefix, n)] = cpu
		}
	}
	addr := in.addr("tls-echo" + suffix)
	cps, err := connRate(e.scale.window, func(b byte) error { return shortConn(addr, b) })
	if err != nil {
		return err
	}
	out[prefix+"cps"] = cps
	return nil
}

// venueHandshakes stores under key the handshake rate at the venue end and the
// forwarder's CPU per connection meanwhile. A key naming x25519 has the
// client offer X25519 alone (the server's default accepts it), so neither
// side pays for ML-KEM: the like-for-like figure against stunnel4, whose
// OpenSSL 3.0 has no hybrid group.
func venueHandshakes(e *env, in *instance, addr string, pki tunnelFiles, key string, out map[string]float64) error {
	cpu0, err := in.cpu()
	if err != nil {
		return err
	}
	cps, n, err := handshakeRate(e, addr, pki, strings.HasPrefix(key, "resumed"), strings.HasSuffix(key, "x25519"))
	if err != nil {
		return err
	}
	out[key] = cps
	cpu1, err := in.cpu()
	if err == nil && in.hasProcess() && n > 0 {
		out[key+"_cpu"] = float64((cpu1 - cpu0).Microseconds()) / float64(n)
	}
	return err
}

// handshakeRate is connRate against a venue end with a Go TLS client that
// presents the box office's certificate: every handshake full, or resumed
// from a shared session cache (then a connection that did not resume,
// beyond each worker's first, fails the figure). It also returns how many
// connections completed.
func handshakeRate(e *env, addr string, pki tunnelFiles, resume, x25519 bool) (float64, int64, error) {
	pool, err := certs.LoadPool(pki.ca)
	if err != nil {
		return 0, 0, err
	}
	pair, err := certs.LoadPair(pki.boxCrt, pki.boxKey)
	if err != nil {
		return 0, 0, err
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{*pair}}
	if resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	if x25519 {
		cfg.CurvePreferences = []tls.CurveID{tls.X25519}
	}
	var full, done atomic.Int64
	cps, err := connRate(e.scale.window, func(b byte) error {
		resumed, err := tlsShortConn(addr, cfg, b)
		if err == nil {
			done.Add(1)
			if !resumed {
				full.Add(1)
			}
		}
		return err
	})
	if err == nil && resume && full.Load() > 2*connRateWorkers {
		err = fmt.Errorf("%d handshakes did not resume", full.Load())
	}
	return cps, done.Load(), err
}

// tlsShortConn is shortConn over TLS; it reports whether the session resumed.
func tlsShortConn(addr string, cfg *tls.Config, b byte) (bool, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return false, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{b}); err != nil {
		return false, err
	}
	var got [1]byte
	if _, err := c.Read(got[:]); err != nil {
		return false, err
	}
	if got[0] != b {
		return false, integrityf("echo %#x, sent %#x", got[0], b)
	}
	return c.ConnectionState().DidResume, nil
}

// tunnelFiles are the PEM files both ends of every tunnel use.
type tunnelFiles struct {
	ca, venueCrt, venueKey, boxCrt, boxKey string
}

// tunnelPKI makes (once per bench run) a CA, the venue's certificate for
// 127.0.0.1 and a box office's client certificate in the bench's folder.
func tunnelPKI(e *env) (tunnelFiles, error) {
	dir := filepath.Join(e.dir, "tunnel-pki")
	f := tunnelFiles{ca: filepath.Join(dir, "ca.crt"),
		venueCrt: filepath.Join(dir, "venue.crt"), venueKey: filepath.Join(dir, "venue.key"),
		boxCrt: filepath.Join(dir, "box.crt"), boxKey: filepath.Join(dir, "box.key")}
	if _, err := os.Stat(f.boxKey); err == nil {
		return f, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, err
	}
	until := time.Now().Add(24 * time.Hour)
	ca, der, err := certs.NewAuthority(certs.Request{Name: "bench-ca", NotAfter: until})
	if err != nil {
		return f, err
	}
	if err := certs.WriteFiles(f.ca, filepath.Join(dir, "ca.key"), der, ca.Key, true); err != nil {
		return f, err
	}
	for _, c := range []struct {
		kind     certs.Kind
		name     string
		crt, key string
	}{{certs.KindServer, "venue", f.venueCrt, f.venueKey}, {certs.KindClient, "boxoffice-1", f.boxCrt, f.boxKey}} {
		der, key, err := ca.Issue(c.kind, certs.Request{Name: c.name, Hosts: []string{"127.0.0.1"}, NotAfter: until})
		if err != nil {
			return f, err
		}
		if err := certs.WriteFiles(c.crt, c.key, der, key, true); err != nil {
			return f, err
		}
	}
	return f, nil
}
