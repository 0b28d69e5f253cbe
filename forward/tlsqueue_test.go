package forward

import (
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// heldConn holds back what a TLS client writes after its ClientHello until
// flush, so that its last handshake flight, its job and its close_notify
// reach the relay in one segment, as they do from a fast client on a busy
// link.
type heldConn struct {
	net.Conn
	mu     sync.Mutex // guards the following
	writes int
	held   []byte
}

func (h *heldConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.writes++
	if h.writes == 1 {
		return h.Conn.Write(p)
	}
	h.held = append(h.held, p...)
	return len(p), nil
}

// Close leaves the socket open for flush; the test closes it after.
func (h *heldConn) Close() error { return nil }

func (h *heldConn) flush() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Conn.SetWriteDeadline(time.Time{}) // tls.Conn.Close set it to now
	_, err := h.Conn.Write(h.held)
	h.held = nil
	return err
}

// TestTLSQueuedClientThatClosedKeepsItsJob: a direct TLS client of an
// exclusive raw listener sends its job and closes while it waits. The
// handshake read the job (and the close_notify) off the socket along with
// the client's Finished, so the socket the hang-up watch peeks holds only
// the FIN; the client is still not one that left the queue, and its job
// is printed when its turn comes.
func TestTLSQueuedClientThatClosedKeepsItsJob(t *testing.T) {
	checkLeaks(t)
	p := newPKI(t, "venue-ca")
	pr := newPrinter(t, &printer{})
	venue := startRelay(t, Config{
		Name:      "printer",
		Upstreams: [][]string{{pr.Addr()}},
		TLS:       p.serverTLS(t, p.path("ca.crt")).Config(),
		Raw:       &Raw{Exclusive: true, QueueTimeout: time.Minute},
	})
	cfg := p.clientTLS(t, p, "boxoffice-1").Config(venue.addr(0))

	holder, err := tls.Dial("tcp", venue.addr(0), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := holder.Write([]byte("first job")); err != nil {
		t.Fatal(err)
	}
	world.Eventually(t, "printer taken", func() bool { return pr.active.Load() == 1 })

	raw := venue.dial(t, 0)
	h := &heldConn{Conn: raw}
	queued := tls.Client(h, cfg)
	if err := queued.Handshake(); err != nil {
		t.Fatal(err)
	}
	if _, err := queued.Write([]byte("second job")); err != nil {
		t.Fatal(err)
	}
	queued.Close() // close_notify, held, then the socket closes after flush
	if err := h.flush(); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	world.Eventually(t, "queued", func() bool {
		st := venue.Stats()
		return st.QueueLength.Load() == 1 || st.QueuedTotal.Load() == 1 // or already out again
	})

	holder.CloseWrite()
	world.Eventually(t, "both jobs printed", func() bool {
		pr.mu.Lock()
		defer pr.mu.Unlock()
		return len(pr.jobs) == 2 || strings.Contains(venue.logs.String(), `"end":"left_queue"`)
	})
	if logs := venue.logs.String(); strings.Contains(logs, `"end":"left_queue"`) {
		t.Fatalf("a client that sent its job and closed was taken for one that left the queue:\n%s", logs)
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if string(pr.jobs[0]) != "first job" || string(pr.jobs[1]) != "second job" {
		t.Errorf("jobs %q", pr.jobs)
	}
}
