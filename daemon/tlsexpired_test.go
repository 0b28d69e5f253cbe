package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/certs"
)

// TestExpiredCertificateWarned: a listener certificate that has expired is
// put in force (it is the one the files hold) with a warning saying that
// every client refuses it, at start and at the reload that keeps it; the
// relay said only "tls certificate in force" at info, its not_after in the
// past, and the first sign was the box offices failing.
func TestExpiredCertificateWarned(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	der, key, err := ca.ca.Issue(certs.KindServer, certs.Request{Name: "venue", Hosts: []string{"127.0.0.1"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteFiles(ca.path("venue.crt"), ca.path("venue.key"), der, key, true); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf("admin: {listen: \"\"}\nlisteners:\n"+
		"  - {name: tunnel, mode: tcp, listen: \"127.0.0.1:%d\", upstream: %q, tls: {cert: venue.crt, key: venue.key}}\n",
		freePort(t, "tcp"), newTCPEcho(t, "printer").addr())
	w := startWorldIn(t, dir, yaml, nil)
	warned := func() int {
		n := 0
		for _, line := range strings.Split(w.logs.String(), "\n") {
			if strings.Contains(line, `"level":"warn"`) && strings.Contains(line, `"listener":"tunnel"`) &&
				strings.Contains(line, "expired") {
				n++
			}
		}
		return n
	}
	if warned() != 1 {
		t.Errorf("no warning that tunnel's certificate has expired at start:\n%s", w.logs)
	}
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	if warned() != 2 {
		t.Errorf("no warning at the reload that keeps it:\n%s", w.logs)
	}
}
