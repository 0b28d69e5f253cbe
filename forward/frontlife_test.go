//go:build linux

package forward

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/edgerelay/relay/internal/world"
)

// TestFrontStopsWithLastListener: the front (its loop goroutine, its
// epoll set and its eventfd) lives while a listener of its Pool holds it.
// Two listeners share it; when the first closes it runs on for the
// second, when the second closes it stops, though the Pool lives on (the
// daemon's lives as long as the process, so a reload that removed every
// plain tcp listener left the loop behind for good). A listener the Pool
// gets later starts a new front, which serves.
func TestFrontStopsWithLastListener(t *testing.T) {
	checkFrontLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	pool := NewPool(0)
	t.Cleanup(func() { pool.Close() }) // after the relays' cleanups
	cfg := Config{Upstreams: [][]string{{backend.Addr()}}, Pool: pool}
	a, b := startRelay(t, cfg), startRelay(t, cfg)
	<-a.Started()
	<-b.Started()
	if a.front == nil || a.front != b.front {
		t.Skip("no shared front on this box")
	}
	if n := frontLoops(); n != 1 {
		t.Fatalf("%d front loops with two listeners, want 1", n)
	}
	fds := anonInodes(t)

	a.Close()
	if _, err := echoOnce(b.addr(0), 1, 1000); err != nil {
		t.Fatalf("the second listener once the first closed: %v", err)
	}
	if n := frontLoops(); n != 1 {
		t.Errorf("%d front loops with one listener left, want 1", n)
	}
	b.Close()
	if n := frontLoops(); n != 0 {
		t.Errorf("%d front loops once the last listener closed, want 0", n)
	}
	if now := anonInodes(t); now != fds-2 {
		t.Errorf("%d epoll and eventfd descriptors once the last listener closed, want %d (the front's two gone)", now, fds-2)
	}

	c := startRelay(t, cfg)
	<-c.Started()
	if c.front == nil || c.front == a.front {
		t.Fatalf("a listener after the front stopped has front %p (the old one %p), want a new one", c.front, a.front)
	}
	if _, err := echoOnce(c.addr(0), 2, 1000); err != nil {
		t.Fatalf("a listener on the new front: %v", err)
	}
	if n, now := frontLoops(), anonInodes(t); n != 1 || now != fds {
		t.Errorf("%d front loops and %d epoll and eventfd descriptors with a listener again, want 1 and %d", n, now, fds)
	}
}

// frontLoops counts the goroutines running a front's loop.
func frontLoops() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "forward.(*front).run(")
}

// anonInodes counts this process's epoll and eventfd descriptors.
func anonInodes(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		link, _ := os.Readlink("/proc/self/fd/" + e.Name())
		if link == "anon_inode:[eventpoll]" || link == "anon_inode:[eventfd]" {
			n++
		}
	}
	return n
}
