package daemon

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/certs"
	"github.com/edgerelay/relay/internal/world"
)

// testCA issues certificates into a folder for a daemon's config.
type testCA struct {
	t   *testing.T
	dir string
	ca  *certs.Authority
}

func newTestCA(t *testing.T, dir string) *testCA {
	t.Helper()
	ca, der, err := certs.NewAuthority(certs.Request{Name: "venue-ca", NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	c := &testCA{t: t, dir: dir, ca: ca}
	if err := certs.WriteFiles(c.path("ca.crt"), c.path("ca.key"), der, ca.Key, true); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *testCA) path(name string) string { return filepath.Join(c.dir, name) }

// issue writes file.crt and file.key for name and returns the certificate.
func (c *testCA) issue(kind certs.Kind, file, name string) tls.Certificate {
	c.t.Helper()
	der, key, err := c.ca.Issue(kind, certs.Request{Name: name, Hosts: []string{"127.0.0.1"}, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := certs.WriteFiles(c.path(file+".crt"), c.path(file+".key"), der, key, true); err != nil {
		c.t.Fatal(err)
	}
	pair, err := certs.TLSCertificate(der, key)
	if err != nil {
		c.t.Fatal(err)
	}
	return pair
}

// tlsLine is one TLS client of a test: it sends lines and reads the echo.
type tlsLine struct {
	c  *tls.Conn
	rd *bufio.Reader
}

func (c *testCA) dial(addr string, client tls.Certificate) (*tlsLine, string) {
	c.t.Helper()
	pool, err := certs.LoadPool(c.path("ca.crt"))
	if err != nil {
		c.t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{client}})
	if err != nil {
		c.t.Fatalf("tls dial %s: %v", addr, err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return &tlsLine{c: conn, rd: bufio.NewReader(conn)}, certs.Fingerprint(conn.ConnectionState().PeerCertificates[0])
}

func (l *tlsLine) roundTrip(t *testing.T, msg string) string {
	t.Helper()
	l.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(l.c, "%s\n", msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	line, err := l.rd.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimSpace(line)
}

// TestReloadTLSCertificate: a reload re-reads the listener's certificate
// even though the config did not change; the connection open across it
// goes on, the next handshake shows the new certificate, and a renewal
// whose key does not match keeps the one in force.
func TestReloadTLSCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	first := ca.issue(certs.KindServer, "venue", "venue-2026")
	client := ca.issue(certs.KindClient, "box", "boxoffice-1")
	echo := newTCPEcho(t, "printer")
	port := freePort(t, "tcp")
	yaml := fmt.Sprintf(`admin: {listen: ""}
listeners:
  - name: tunnel
    mode: tcp
    listen: 127.0.0.1:%d
    upstream: %s
    tls: {cert: venue.crt, key: venue.key, client_ca: ca.crt}
`, port, echo.addr())
	files := map[string]string{}
	for _, name := range []string{"ca.crt", "venue.crt", "venue.key"} {
		data, err := os.ReadFile(ca.path(name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(data)
	}
	w := startWorld(t, yaml, files)
	ca.dir = w.dir // from here on, certificates go where the config is
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	w.logs.Wait(t, "tls certificate in force", certs.Fingerprint(first.Leaf))

	open, seen := ca.dial(addr, client)
	if seen != certs.Fingerprint(first.Leaf) {
		t.Fatalf("first handshake showed %s, want the first certificate", seen)
	}
	if got := open.roundTrip(t, "job 1"); got != "printer:job 1" {
		t.Fatalf("got %q", got)
	}

	second := ca.issue(certs.KindServer, "venue", "venue-2027")
	if err := w.d.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	w.logs.Wait(t, "tls certificate in force", certs.Fingerprint(second.Leaf))
	if got := open.roundTrip(t, "job 2"); got != "printer:job 2" {
		t.Fatalf("the connection open across the reload: got %q", got)
	}
	next, seen := ca.dial(addr, client)
	if seen != certs.Fingerprint(second.Leaf) {
		t.Fatalf("handshake after the reload showed %s, want %s", seen, certs.Fingerprint(second.Leaf))
	}
	if got := next.roundTrip(t, "job 3"); got != "printer:job 3" {
		t.Fatalf("got %q", got)
	}

	// A renewal half done: the new certificate beside the old key.
	ca.issue(certs.KindServer, "half", "venue-2028")
	if err := os.Rename(ca.path("half.crt"), ca.path("venue.crt")); err != nil {
		t.Fatal(err)
	}
	err := w.d.Reload()
	if err == nil || !strings.Contains(err.Error(), "venue.key") || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("reload with a mismatched pair: %v, want an error naming venue.key", err)
	}
	w.logs.Wait(t, "nothing changed", "venue.key", "does not match")
	_, seen = ca.dial(addr, client)
	if seen != certs.Fingerprint(second.Leaf) {
		t.Fatalf("after the rejected reload the handshake showed %s, want the second certificate still", seen)
	}
	if strings.Contains(w.logs.String(), "PRIVATE KEY") {
		t.Fatal("a private key reached the log")
	}

	// -watch: saving a renewed certificate is a reload of its own.
	changed, err := w.d.Watch(50 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	third := ca.issue(certs.KindServer, "venue", "venue-2029")
	select {
	case <-changed:
	case <-time.After(world.WaitLimit):
		t.Fatal("saving the listener's certificate was not reported by Watch")
	}
	if err := w.d.Reload(); err != nil {
		t.Fatalf("reload after the renewal: %v", err)
	}
	if _, seen = ca.dial(addr, client); seen != certs.Fingerprint(third.Leaf) {
		t.Fatalf("after the watched renewal the handshake showed %s, want the third certificate", seen)
	}
}
