package daemon

import (
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"

	"github.com/edgerelay/relay/internal/world"
)

// TestReloadKeepsRawTurn: a reload that changes an exclusive raw listener
// while a job holds the printer: the successor's first client waits for
// that job to end instead of printing beside it (README: with exclusive,
// the printer never sees two relay connections at once), and the status
// counts one job printing, not two.
func TestReloadKeepsRawTurn(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	var open, most atomic.Int64
	printer := world.NewBackend(t, func(c net.Conn) {
		n := open.Add(1)
		defer open.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		io.Copy(c, c)
	})
	port := freePort(t, "tcp")
	at := fmt.Sprintf("127.0.0.1:%d", port)
	render := func(queueTimeout string) string {
		return fmt.Sprintf("admin: {listen: \"\"}\nlisteners:\n  - {name: printer, mode: raw, listen: %q, "+
			"upstream: %q, raw: {exclusive: true, queue_timeout: %s}}\n", at, printer.Addr(), queueTimeout)
	}
	w := startWorld(t, render("30s"), nil)
	first, err := dialLine(t, "", at)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := first.roundTrip("1"); err != nil || got != "1" {
		t.Fatalf("first job: %q %v", got, err)
	}
	w.writeFile("relay.yaml", render("20s"))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	second, err := dialLine(t, "", at)
	if err != nil {
		t.Fatal(err)
	}
	_ = second.SetDeadline(time.Now().Add(world.WaitLimit))
	if _, err := io.WriteString(second, "2\n"); err != nil {
		t.Fatal(err)
	}
	world.Eventually(t, "the second job to queue or to reach the printer", func() bool {
		return rawCounts(w, "printer").QueueLength == 1 || printer.Accepted() == 2
	})
	if n := printer.Accepted(); n != 1 {
		t.Fatalf("the printer got %d connections while the first job held it", n)
	}
	if busy := len(rawCounts(w, "printer").Printing); busy != 1 {
		t.Errorf("status counts %d jobs printing, want 1", busy)
	}
	first.Close()
	if line, err := second.r.ReadString('\n'); err != nil || line != "2\n" {
		t.Fatalf("second job once the first ended: %q %v", line, err)
	}
	second.Close()
	w.logs.WaitCount(t, 2, `"message":"raw job done"`, `"end":"eof"`)
	if m := most.Load(); m != 1 {
		t.Errorf("the printer saw %d connections at once, want 1", m)
	}
	_ = w.d.Close()
}

// rawCounts adds up the raw queue figures of every instance named name.
func rawCounts(w *relayWorld, name string) (sum struct {
	QueueLength int64
	Printing    []string
}) {
	for _, s := range w.d.Snapshots() {
		if s.Listener != name || s.Raw == nil {
			continue
		}
		sum.QueueLength += s.Raw.QueueLength
		for _, h := range s.Raw.Printing {
			sum.Printing = append(sum.Printing, h.Client)
		}
	}
	return sum
}
