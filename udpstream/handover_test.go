package udpstream

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	testworld "github.com/edgerelay/relay/internal/world"
)

// TestHandover replaces a relay by one with another upstream on the same
// port, as a reload does: the successor takes over the socket, a client of
// the old relay keeps its session and its old upstream until it goes quiet
// and expires, a new client gets the new upstream, no datagram of either is
// lost, and the old relay drains by itself.
//
// The sessions must outlive the handover and the exchanges: with 200 ms, a
// pause of the busy test process let the old client's session expire
// before its first datagram after the handover (1 of 2 runs of the package
// at load 14).
func TestHandover(t *testing.T) {
	checkLeaks(t)
	const timeout = time.Second
	w := newWorld(t, 1, func(c *Config) { c.SessionTimeout = timeout })
	to := w.port(0)
	old := newClient(t, "127.0.0.2")
	if e, err := parseEcho(old.exchange(to, []byte("before"))); err != nil || e.tag != "b0" {
		t.Fatalf("before the handover: %+v %v", e, err)
	}

	files, err := w.relay.Files()
	if err != nil {
		t.Fatal(err)
	}
	newUp := startBackend(t, "new")
	logs := &testworld.LogBuffer{}
	next, err := Listen(Config{
		Name:           "rtb",
		Listen:         []string{to.String()},
		Upstreams:      [][]string{{newUp.addr().String()}},
		SessionTimeout: timeout,
		Inherit:        files,
		Replaces:       []*Relay{w.relay},
		Log:            zerolog.New(logs),
	})
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	next.TakeOver()
	served := make(chan error, 1)
	go func() { served <- next.Serve() }()
	t.Cleanup(func() { _ = next.Close() }) // a failing run leaks nothing into the tests after it
	drained := make(chan error, 1)
	go func() { drained <- w.relay.Shutdown(context.Background()) }()
	waitDraining(t, w.relay)

	fresh := newClient(t, "127.0.0.3")
	for i := range 20 {
		msg := []byte(fmt.Sprintf("old %d", i))
		if e, err := parseEcho(old.exchange(to, msg)); err != nil || e.tag != "b0" || e.sum != sha(msg) {
			t.Fatalf("old client, datagram %d: %+v %v (want its old upstream b0)", i, e, err)
		}
		msg = []byte(fmt.Sprintf("new %d", i))
		if e, err := parseEcho(fresh.exchange(to, msg)); err != nil || e.tag != "new" || e.sum != sha(msg) {
			t.Fatalf("new client, datagram %d: %+v %v (want the new upstream)", i, e, err)
		}
	}
	if n := w.relay.Stats().Drops.Draining.Load(); n != 0 {
		t.Errorf("the old relay dropped %d datagrams as draining", n)
	}
	// The old client goes quiet: its session expires, the old relay is done.
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("old relay Shutdown = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("old relay still draining 10 s after its only client went quiet")
	}
	// Now the old client is new to the successor.
	if e, err := parseEcho(old.exchange(to, []byte("after"))); err != nil || e.tag != "new" {
		t.Fatalf("old client after its session expired: %+v %v", e, err)
	}
	if got := next.Stats().SessionsCreated.Load(); got != 2 {
		t.Errorf("successor created %d sessions, want 2", got)
	}
	if err := next.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve = %v", err)
	}
}
