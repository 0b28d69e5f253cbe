//go:build linux

package forward

// The front's own connect to an upstream, where it differs from
// net.Dialer's.

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// TestFrontLinkLocalUpstream: an upstream at an IPv6 link-local address
// names its interface (fe80::1%lo), as net.Dialer takes it; the front's
// connect gives the kernel the interface too, or every connect fails
// with EINVAL and the upstream is marked down.
func TestFrontLinkLocalUpstream(t *testing.T) {
	if !world.RunInNetns(t, []string{"-6", "addr", "add", "fe80::1/64", "dev", "lo", "nodad"}) {
		return
	}
	checkFrontLeaks(t)
	ln, err := net.Listen("tcp6", "[fe80::1%lo]:0")
	if err != nil {
		t.Fatal(err)
	}
	world.ServeOn(t, ln, world.Echo)
	port := ln.Addr().(*net.TCPAddr).Port
	for _, zone := range []string{"lo", "1"} { // by name, by index (lo is 1 in a new namespace)
		up := fmt.Sprintf("[fe80::1%%%s]:%d", zone, port)
		r := startRelay(t, Config{Upstreams: [][]string{{up}}})
		if _, err := echoOnce(r.addr(0), 7, 5000); err != nil {
			t.Fatalf("upstream %s: %v; relay's log:\n%s", up, err, r.logs.String())
		}
		f := closedLines(t, r, 1, EndEOF)[0]
		if f["upstream"] != up || f["bytes_in"] != 5000.0 || f["bytes_out"] != 5000.0 {
			t.Errorf("access line %v", f)
		}
	}
}

// TestFrontLinkLocalClient: a client at an IPv6 link-local address is
// named with its interface in the access line (fe80::1%lo), by the front
// as by the engine: accept4's sockaddr carries the interface as a scope
// id, which the front dropped.
func TestFrontLinkLocalClient(t *testing.T) {
	if !world.RunInNetns(t, []string{"-6", "addr", "add", "fe80::1/64", "dev", "lo", "nodad"}) {
		return
	}
	checkFrontLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	for _, path := range []string{"front", "engine"} {
		t.Run(path, func(t *testing.T) {
			r := listenRelay(t, Config{Listen: []string{"[fe80::1%lo]:0"}, Upstreams: [][]string{{backend.Addr()}}})
			if path == "engine" {
				r.engineOnly()
			}
			r.serve(t)
			if path == "front" && !r.useFront {
				t.Fatal("the listener has no front")
			}
			for range 2 { // the second from the front's cache of names
				client, err := echoOnce(r.addr(0), 7, 5000)
				if err != nil {
					t.Fatalf("echo: %v; relay's log:\n%s", err, r.logs.String())
				}
				if !strings.HasPrefix(client, "[fe80::1%lo]:") {
					t.Fatalf("the client's own address is %s, want one on fe80::1%%lo", client)
				}
				lines := r.logs.WaitCount(t, 1, `"client":"`+client+`"`)
				if len(lines) != 1 {
					t.Errorf("%d access lines name the client %s, want 1:\n%s", len(lines), client, r.logs)
				}
			}
		})
	}
}

// TestZoneNamesForgetOld: link-local clients come in on 1 000 interfaces
// one after the other, each gone (a replugged adapter, a VPN's tunnel:
// a new index each time) before the next; the cache keeps those asked for
// within zoneTTL, not every interface it ever named.
func TestZoneNamesForgetOld(t *testing.T) {
	var z zoneNames
	now := time.Unix(1_700_000_000, 0)
	for id := uint32(1); id <= 1000; id++ {
		if got, want := z.name(-1, id, now), strconv.Itoa(int(id)); got != want { // no socket: the index in decimal
			t.Fatalf("name of scope id %d = %q, want %q", id, got, want)
		}
		now = now.Add(zoneTTL / 2)
	}
	if len(z) > 3 {
		t.Fatalf("%d scope ids cached after 1 000 interfaces each asked once, %v apart; want those of the last %v only", len(z), zoneTTL/2, zoneTTL)
	}
	z.name(-1, 7, now)
	if _, ok := z[7]; !ok {
		t.Fatal("the id just asked for is not cached")
	}
}
