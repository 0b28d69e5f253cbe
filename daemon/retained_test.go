package daemon

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgerelay/relay/forward"
	"github.com/edgerelay/relay/ftppassive"
	"github.com/edgerelay/relay/udpstream"
)

// retainedYAML has one listener of each kind; %[5]s changes with every
// reload so that each reload replaces them all.
const retainedYAML = `
listeners:
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
	render := func(i int) string {
		return fmt.Sprintf(retainedYAML, web, printer, rtb, files, []string{"1h", "59m"}[i%2], data)
	}
	w := startWorld(t, render(0), nil)
	const reloads = 12
	var made, freed [4]atomic.Int64 // by kind: tcp, raw, udp, ftp
	kinds := map[string]int{"web": 0, "printer": 1, "rtb": 2, "files": 3}
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
