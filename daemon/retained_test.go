package daemon

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgerelay/relay/certs"
	"github.com/edgerelay/relay/forward"
	"github.com/edgerelay/relay/ftppassive"
	"github.com/edgerelay/relay/udpstream"
)

// retainedYAML has one listener of each kind, and the two ends of a
// tunnel (client certificates, an ACL on their names, per-source limits,
// health checks); %[5]s changes with every reload so that each reload
// replaces them all.
const retainedYAML = `
acl: {file: hba.conf}
listeners:
  - {name: venue, mode: raw, listen: "127.0.0.1:%[7]d", upstream: "127.0.0.1:9", idle_timeout: %[5]s, tls: {cert: venue.crt, key: venue.key, client_ca: ca.crt}, per_source: {max_conns: 4, rate: 10/s}}
  - {name: box, mode: tcp, listen: "127.0.0.1:%[8]d", upstream: "127.0.0.1:%[7]d", idle_timeout: %[5]s, upstream_tls: {ca: ca.crt, cert: box.crt, key: box.key}, health: {interval: 50ms}}
  - {name: web, mode: tcp, listen: "127.0.0.1:%[1]d", upstream: "127.0.0.1:9", idle_timeout: %[5]s}
  - {name: printer, mode: raw, listen: "127.0.0.1:%[2]d", upstream: "127.0.0.1:9", idle_timeout: %[5]s, raw: {exclusive: true}}
  - {name: rtb, mode: udp, listen: "127.0.0.1:%[3]d", upstream: "127.0.0.1:9", udp: {session_timeout: %[5]s}}
  - {name: files, mode: ftp, listen: "127.0.0.1:%[4]d", upstream: "127.0.0.1:9", idle_timeout: %[5]s, ftp: {data_ports: "%[6]d-%[6]d"}}
`

// TestReloadsReleaseRetiredListeners: a listener a reload retired, once
// drained, is garbage. A soak (go run ./bench -soak) found the heap of a
// relay growing by about 30 KiB per reload with no traffic at all.
func TestReloadsReleaseRetiredListeners(t *testing.T) {
	web, printer, rtb, files, data := freePort(t, "tcp"), freePort(t, "tcp"), freePort(t, "udp"), freePort(t, "tcp"), freePort(t, "tcp")
	venue, box := freePort(t, "tcp"), freePort(t, "tcp")
	render := func(i int) string {
		return fmt.Sprintf(retainedYAML, web, printer, rtb, files, []string{"1h", "59m"}[i%2], data, venue, box)
	}
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	ca.issue(certs.KindServer, "venue", "127.0.0.1")
	ca.issue(certs.KindClient, "box", "box-1")
	w := startWorldIn(t, dir, render(0), map[string]string{"hba.conf": "host all 127.0.0.0/8 allow\nhostssl venue all allow cn=box-*\n"})
	const reloads = 12
	var made, freed [6]atomic.Int64 // by listener
	kinds := map[string]int{"web": 0, "printer": 1, "rtb": 2, "files": 3, "venue": 4, "box": 5}
	watch := func() {
		w.d.mu.Lock()
		defer w.d.mu.Unlock()
		for name, in := range w.d.running {
			k := kinds[name]
			made[k].Add(1)
			note := func(k int) { freed[k].Add(1) }
			switch srv := in.srv.(type) {
			case *forward.Listener:
				runtime.AddCleanup(srv, note, k)
			case *ftppassive.Proxy:
				runtime.AddCleanup(srv, note, k)
			case *udpstream.Relay:
				runtime.AddCleanup(srv, note, k)
			default:
				t.Fatalf("%s: a %T", name, srv)
			}
		}
	}
	watch()
	for i := 1; i <= reloads; i++ {
		w.writeFile("relay.yaml", render(i))
		if err := w.d.Reload(); err != nil {
			t.Fatal(err)
		}
		watch()
	}
	// Every retired one drains at once (it has no connection); then the
	// collector may take it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		done := true
		for k := range made {
			done = done && freed[k].Load() >= made[k].Load()-1
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the collector runs cleanups on its own goroutine
	}
	var bad []string
	for name, k := range kinds {
		if n, f := made[k].Load(), freed[k].Load(); f < n-1 {
			bad = append(bad, fmt.Sprintf("%s: %d of %d retired instances still reachable", name, n-1-f, n-1))
		}
	}
	if len(bad) > 0 {
		t.Fatal(strings.Join(bad, "; "))
	}
}
