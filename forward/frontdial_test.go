//go:build linux

package forward

// The front's own connect to an upstream, where it differs from
// net.Dialer's.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/edgerelay/relay/internal/world"
)

// inNetns is set in the environment of a test run again inside a network
// namespace of its own (runInNetns).
const inNetns = "FORWARD_TEST_IN_NETNS"

// runInNetns runs the test t again in a network namespace it makes for
// it, after setup's ip commands (each the arguments of one `ip -n NS`),
// and reports whether the caller is that run. Outside one, it skips the
// test where namespaces cannot be made (not root, no ip).
func runInNetns(t *testing.T, setup ...[]string) bool {
	t.Helper()
	if os.Getenv(inNetns) != "" {
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2) for a network namespace")
	}
	ns := fmt.Sprintf("relay-fwd-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("cannot make a network namespace: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	for _, args := range append([][]string{{"link", "set", "lo", "up"}}, setup...) {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
		}
	}
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), inNetns+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Errorf("in namespace %s: %v\n%s", ns, err, out)
	}
	return false
}

// TestFrontLinkLocalUpstream: an upstream at an IPv6 link-local address
// names its interface (fe80::1%lo), as net.Dialer takes it; the front's
// connect gives the kernel the interface too, or every connect fails
// with EINVAL and the upstream is marked down.
func TestFrontLinkLocalUpstream(t *testing.T) {
	if !runInNetns(t, []string{"-6", "addr", "add", "fe80::1/64", "dev", "lo", "nodad"}) {
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
	if !runInNetns(t, []string{"-6", "addr", "add", "fe80::1/64", "dev", "lo", "nodad"}) {
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
