package daemon

import (
	"fmt"
	"os"
	"testing"

	"github.com/edgerelay/relay/certs"
)

// TestReloadLogsUpstreamCertificate: the client certificate of
// upstream_tls, which a box office renews as the venue renews its own, is
// logged as "tls certificate in force" with its SHA-256 at start and after
// a reload that changes it, as README's box-office tunnel says of every
// certificate; only a listener's own (tls) certificate was, so a box
// office's log never showed that the renewal took.
func TestReloadLogsUpstreamCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	first := ca.issue(certs.KindClient, "box", "boxoffice-1")
	yaml := fmt.Sprintf(`admin: {listen: ""}
listeners:
  - name: printer
    mode: raw
    listen: 127.0.0.1:%d
    upstream: 127.0.0.1:%d
    upstream_tls: {ca: ca.crt, cert: box.crt, key: box.key}
`, freePort(t, "tcp"), freePort(t, "tcp"))
	files := map[string]string{}
	for _, name := range []string{"ca.crt", "box.crt", "box.key"} {
		data, err := os.ReadFile(ca.path(name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(data)
	}
	w := startWorld(t, yaml, files)
	ca.dir = w.dir
	w.logs.Wait(t, "tls certificate in force", `"side":"upstream"`, "boxoffice-1", certs.Fingerprint(first.Leaf))

	second := ca.issue(certs.KindClient, "box", "boxoffice-1")
	if err := w.d.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	w.logs.Wait(t, "tls certificate in force", `"side":"upstream"`, certs.Fingerprint(second.Leaf))
}
