package main

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/relay/certs"
	"github.com/edgerelay/relay/internal/world"
)

// Status bytes of the printer simulator.
const (
	enq = 0x05 // status request
	ack = 0x06 // status answer
)

// tunnelPrinter is a ticket printer: every ENQ byte is answered at once
// with ACK; the other bytes are the job, and at EOF it answers with the
// job's length and SHA-256. It counts connections and the most it had at
// once (exclusive access means one).
type tunnelPrinter struct {
	*world.Backend
	active, maxActive atomic.Int32
}

func newTunnelPrinter(t *testing.T) *tunnelPrinter {
	p := &tunnelPrinter{}
	p.Backend = world.NewBackend(t, p.serve)
	return p
}

func (p *tunnelPrinter) serve(c net.Conn) {
	n := p.active.Add(1)
	defer p.active.Add(-1)
	for m := p.maxActive.Load(); n > m && !p.maxActive.CompareAndSwap(m, n); m = p.maxActive.Load() {
	}
	h := sha256.New()
	var size int64
	buf := make([]byte, 32<<10)
	for {
		k, err := c.Read(buf)
		for _, b := range buf[:k] {
			if b == enq {
				c.Write([]byte{ack})
			}
		}
		h.Write(buf[:k])
		size += int64(k)
		if err != nil {
			break
		}
	}
	time.Sleep(20 * time.Millisecond) // printing: long enough for a second job to queue
	fmt.Fprintf(c, "OK %d %s\n", size, hex.EncodeToString(h.Sum(nil)))
}

// child is a relay process with its log lines collected.
type child struct {
	cmd  *exec.Cmd
	logs *world.LogBuffer
	done chan struct{}
}

func startRelayChild(t *testing.T, cfg string) *child {
	t.Helper()
	cmd, stderr := runChild(t, cfg)
	c := &child{cmd: cmd, logs: &world.LogBuffer{}, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		io.Copy(c.logs, stderr)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-c.done
		_ = cmd.Wait()
	})
	c.logs.Wait(t, "relay started")
	return c
}

// relayCert runs `relay cert ARGS` in this process and fails on error.
func relayCert(t *testing.T, args ...string) {
	t.Helper()
	if code, stdout, stderr := runCmd(append([]string{"cert"}, args...)...); code != 0 {
		t.Fatalf("relay cert %v: exit %d\n%s%s", args, code, stdout, stderr)
	} else if strings.Contains(stdout, "PRIVATE KEY") {
		t.Fatalf("relay cert printed a key:\n%s", stdout)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tunnelJob sends a job (with an ENQ status request first) through addr
// and returns whether the ACK came and the printer's final reply.
func tunnelJob(addr string, seed uint64, n int64) (string, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	rd := bufio.NewReader(c)
	if _, err := c.Write([]byte{enq}); err != nil {
		return "", err
	}
	if b, err := rd.ReadByte(); err != nil || b != ack {
		return "", fmt.Errorf("status request: got %#x, %v", b, err)
	}
	if _, err := io.Copy(c, jobBytes(seed, n)); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	line, err := rd.ReadString('\n')
	return strings.TrimSpace(line), err
}

// jobBytes is a print job: stream bytes without ENQ, which the printer
// would answer.
func jobBytes(seed uint64, n int64) io.Reader {
	return noENQ{world.Stream(seed, n)}
}

type noENQ struct{ r io.Reader }

func (f noENQ) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	for i := range p[:n] {
		if p[i] == enq {
			p[i] = 0x04
		}
	}
	return n, err
}

func wantJob(seed uint64, n int64) string {
	h := sha256.New()
	h.Write([]byte{enq})
	io.Copy(h, jobBytes(seed, n))
	return fmt.Sprintf("OK %d %s", n+1, hex.EncodeToString(h.Sum(nil)))
}

// TestBoxOfficeTunnel runs the box-office chain with two real relay
// processes and certificates made by `relay cert`: a workstation prints
// through the box-office relay, which carries each job over mutual TLS to
// the venue relay in front of the printer simulator. Jobs arrive intact and
// one at a time, status requests are answered over the tunnel, reconnects
// resume; clients without the right certificate, or with a name the ACL
// rejects, are refused before the printer sees a connection; openssl
// s_client is an independent TLS client.
func TestBoxOfficeTunnel(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	relayCert(t, "ca", "-dir", dir, "-name", "venue-ca")
	relayCert(t, "server", "-dir", dir, "-name", "venue", "-host", "127.0.0.1")
	relayCert(t, "client", "-dir", dir, "-name", "boxoffice-1")
	relayCert(t, "client", "-dir", dir, "-name", "boxoffice-3") // the lost laptop
	relayCert(t, "client", "-dir", dir, "-name", "boxoffice-old", "-not-before", "2020-01-01T00:00:00Z", "-days", "30")
	relayCert(t, "ca", "-dir", other, "-name", "intruder-ca")
	relayCert(t, "client", "-dir", other, "-name", "boxoffice-2")
	if fi, err := os.Stat(filepath.Join(dir, "boxoffice-1.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}

	printer := newTunnelPrinter(t)
	venuePort, boxPort := world.ReserveTCPPort(t), world.ReserveTCPPort(t)
	writeFile(t, filepath.Join(dir, "venue_hba.conf"),
		"hostssl tunnel all reject cn=boxoffice-3\nhostssl tunnel all allow cn=boxoffice-*\nhost all all reject\n")
	writeFile(t, filepath.Join(dir, "venue.yaml"), fmt.Sprintf(`admin: {listen: ""}
acl: {file: venue_hba.conf}
listeners:
  - name: tunnel
    mode: raw
    listen: 127.0.0.1:%d
    upstream: %s
    raw: {exclusive: true}
    tls: {cert: venue.crt, key: venue.key, client_ca: ca.crt}
`, venuePort, printer.Addr()))
	writeFile(t, filepath.Join(dir, "box.yaml"), fmt.Sprintf(`admin: {listen: ""}
listeners:
  - name: printer
    mode: raw
    listen: 127.0.0.1:%d
    upstream: 127.0.0.1:%d
    upstream_tls: {ca: ca.crt, cert: boxoffice-1.crt, key: boxoffice-1.key}
`, boxPort, venuePort))
	if code, out, errs := runCmd("check", "-config", filepath.Join(dir, "venue.yaml"), "-acl-test", "127.0.0.1", "-listener", "tunnel", "-cn", "boxoffice-3"); code != 0 || !strings.HasPrefix(out, "reject by ") || !strings.Contains(out, "venue_hba.conf:1") {
		t.Fatalf("relay check -cn: %d %q %q", code, out, errs)
	}
	venue := startRelayChild(t, filepath.Join(dir, "venue.yaml"))
	box := startRelayChild(t, filepath.Join(dir, "box.yaml"))
	boxAddr := fmt.Sprintf("127.0.0.1:%d", boxPort)
	venueAddr := fmt.Sprintf("127.0.0.1:%d", venuePort)

	// Four workstations print at once; the printer takes them one by one.
	sizes := []int64{256 << 10, 1, 5000, 1 << 20}
	var wg sync.WaitGroup
	errs := make([]error, len(sizes))
	for i, n := range sizes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := tunnelJob(boxAddr, uint64(i), n)
			if err == nil && got != wantJob(uint64(i), n) {
				err = fmt.Errorf("reply %q, want %q", got, wantJob(uint64(i), n))
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("job %d (%d bytes): %v", i, sizes[i], err)
		}
	}
	if m := printer.maxActive.Load(); m != 1 {
		t.Errorf("the printer had %d connections at once, want 1 (exclusive)", m)
	}
	// The next jobs come after the box office holds a session ticket.
	for i := range 2 {
		if got, err := tunnelJob(boxAddr, 10+uint64(i), 300); err != nil || got != wantJob(10+uint64(i), 300) {
			t.Fatalf("sequential job %d: %q %v", i, got, err)
		}
	}
	venue.logs.WaitCount(t, len(sizes)+2, "raw job done", `"peer_cn":"boxoffice-1"`, `"acl":"`)
	if n := venue.logs.Count("raw job done", `"resumed":true`); n < 2 {
		t.Errorf("%d resumed sessions, want the 2 sequential jobs at least:\n%s", n, venue.logs)
	}
	box.logs.WaitCount(t, 2, "raw job done", `"resumed":true`)
	accepted := printer.Accepted()

	pool, err := certs.LoadPool(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct{ name, crt, reason string }{
		{"no certificate", "", "no_certificate"},
		{"other CA", filepath.Join(other, "boxoffice-2"), "unknown_authority"},
		{"expired", filepath.Join(dir, "boxoffice-old"), "expired"},
		{"name the ACL rejects", filepath.Join(dir, "boxoffice-3"), ""},
	}
	for _, b := range bad {
		cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
		if b.crt != "" {
			pair, err := certs.LoadPair(b.crt+".crt", b.crt+".key")
			if err != nil {
				t.Fatal(err)
			}
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return pair, nil }
		}
		c, err := tls.Dial("tcp", venueAddr, cfg)
		if err == nil {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write([]byte{enq})
			var one [1]byte
			_, err = c.Read(one[:])
			c.Close()
		}
		if err == nil {
			t.Errorf("%s: the venue answered", b.name)
		}
		if b.reason != "" {
			venue.logs.Wait(t, "tls handshake failed", `"reason":"`+b.reason+`"`)
		} else {
			venue.logs.Wait(t, "acl rejected client", `"cn":"boxoffice-3"`, `"rule":"`)
		}
	}
	if got := printer.Accepted(); got != accepted {
		t.Errorf("the printer saw %d connections from refused clients", got-accepted)
	}

	t.Run("openssl s_client", func(t *testing.T) {
		openssl, err := exec.LookPath("openssl")
		if err != nil {
			t.Skip("openssl not installed (.ci/install-deps installs it)")
		}
		cmd := exec.Command(openssl, "s_client", "-quiet", "-connect", venueAddr, "-servername", "127.0.0.1",
			"-CAfile", filepath.Join(dir, "ca.crt"), "-verify_return_error",
			"-cert", filepath.Join(dir, "boxoffice-1.crt"), "-key", filepath.Join(dir, "boxoffice-1.key"))
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		stdin.Write([]byte{enq})
		got := make(chan []byte, 1)
		go func() {
			var one [1]byte
			n, _ := io.ReadFull(stdout, one[:])
			got <- one[:n]
		}()
		select {
		case b := <-got:
			if len(b) != 1 || b[0] != ack {
				t.Fatalf("openssl s_client got %q, want ACK", b)
			}
		case <-time.After(world.WaitLimit):
			t.Fatal("openssl s_client: no status answer")
		}
	})
}
