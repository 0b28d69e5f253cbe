package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/certs"
	"github.com/edgerelay/relay/internal/world"
)

// TestExpiredCertificateWarned: a listener certificate that has expired (the
// one it presents to clients, and the one it presents to its upstream) is
// put in force (it is the one the files hold) with a warning saying that
// every peer refuses it, at start and at the reload that keeps it; the
// relay said only "tls certificate in force" at info, its not_after in the
// past, and the first sign was the box offices failing.
func TestExpiredCertificateWarned(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	for _, c := range []struct {
		kind certs.Kind
		file string
	}{{certs.KindServer, "venue"}, {certs.KindClient, "box"}} {
		der, key, err := ca.ca.Issue(c.kind, certs.Request{Name: c.file, Hosts: []string{"127.0.0.1"},
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if err := certs.WriteFiles(ca.path(c.file+".crt"), ca.path(c.file+".key"), der, key, true); err != nil {
			t.Fatal(err)
		}
	}
	printer := newTCPEcho(t, "printer").addr()
	yaml := fmt.Sprintf("admin: {listen: \"\"}\nlisteners:\n"+
		"  - {name: tunnel, mode: tcp, listen: \"127.0.0.1:%d\", upstream: %q, tls: {cert: venue.crt, key: venue.key}}\n"+
		"  - {name: box, mode: tcp, listen: \"127.0.0.1:%d\", upstream: %q, upstream_tls: {ca: ca.crt, cert: box.crt, key: box.key}}\n",
		freePort(t, "tcp"), printer, freePort(t, "tcp"), printer)
	w := startWorldIn(t, dir, yaml, nil)
	warned := func(listener, side string) int {
		n := 0
		for _, line := range strings.Split(w.logs.String(), "\n") {
			if world.ContainsAll(line, `"level":"warn"`, `"listener":"`+listener+`"`, `"side":"`+side+`"`, "expired") {
				n++
			}
		}
		return n
	}
	if warned("tunnel", "client") != 1 || warned("box", "upstream") != 1 {
		t.Errorf("no warning that tunnel's and box's certificates have expired at start:\n%s", w.logs)
	}
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	if warned("tunnel", "client") != 2 || warned("box", "upstream") != 2 {
		t.Errorf("no warnings at the reload that keeps them:\n%s", w.logs)
	}
}
