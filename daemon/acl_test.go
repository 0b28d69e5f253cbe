package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"
)

// TestACLEnforcedEndToEnd proves a rejected source never reaches the
// backend, over TCP and UDP, with sources bound to distinct loopback
// addresses, and that a reload swaps the rules (a broken file keeps them).
func TestACLEnforcedEndToEnd(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	backend := newTCPEcho(t, "web")
	udpBackend := newUDPEcho(t, "rtb")
	webPort, rtbPort := freePort(t, "tcp"), freePort(t, "udp")
	yaml := fmt.Sprintf(`
admin: {listen: ""}
acl: {file: relay_hba.conf}
listeners:
  - {name: web, mode: tcp, listen: "127.0.0.1:%d", upstream: "%s"}
  - {name: rtb, mode: udp, listen: "127.0.0.1:%d", upstream: "%s"}
`, webPort, backend.addr(), rtbPort, udpBackend.addr())
	hba := `
# TYPE LISTENER ADDRESS     ACTION
host   web      127.0.0.2/32 reject
udp    rtb      127.0.0.2    255.255.255.255 reject
host   all      127.0.0.0/8  allow
`
	w := startWorld(t, yaml, map[string]string{"relay_hba.conf": hba})
	web := fmt.Sprintf("127.0.0.1:%d", webPort)
	rtb := fmt.Sprintf("127.0.0.1:%d", rtbPort)

	// TCP: 127.0.0.2 is closed before any dial; 127.0.0.3 gets through.
	if got := tcpOutcome(t, "127.0.0.2", web); got != "closed" {
		t.Fatalf("127.0.0.2 on web: got %q, want closed", got)
	}
	if n := backend.accepted.Load(); n != 0 {
		t.Fatalf("backend saw %d connections from a rejected client", n)
	}
	if got := tcpOutcome(t, "127.0.0.3", web); got != "web:hello" {
		t.Fatalf("127.0.0.3 on web: got %q", got)
	}

	// UDP: the rejected source gets nothing back; the allowed one does.
	if got, err := udpRoundTrip(udpClient(t, "127.0.0.2"), rtb, "x", 300*time.Millisecond); err == nil {
		t.Fatalf("127.0.0.2 on rtb got a reply %q", got)
	}
	if got, err := udpRoundTrip(udpClient(t, "127.0.0.3"), rtb, "x", 2*time.Second); err != nil || got != "rtb:x" {
		t.Fatalf("127.0.0.3 on rtb: %q, %v", got, err)
	}
	if !strings.Contains(w.logs.String(), "relay_hba.conf:3") {
		t.Errorf("rejection log does not name the deciding line:\n%s", w.logs.String())
	}

	// Reload with a file that rejects 127.0.0.3 instead: new connections see it.
	w.writeFile("relay_hba.conf", "host web 127.0.0.3/32 reject\nhost all all allow\n")
	if err := w.d.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := tcpOutcome(t, "127.0.0.3", web); got != "closed" {
		t.Fatalf("after reload 127.0.0.3: got %q, want closed", got)
	}
	if got := tcpOutcome(t, "127.0.0.2", web); got != "web:hello" {
		t.Fatalf("after reload 127.0.0.2: got %q", got)
	}

	// A broken file keeps the rules in force and says where it broke.
	w.writeFile("relay_hba.conf", "host web 10.0.0.0/33 allow\n")
	if err := w.d.Reload(); err == nil || !strings.Contains(err.Error(), "relay_hba.conf:1:") {
		t.Fatalf("reload with a broken ACL: err = %v, want file:line:col", err)
	}
	if got := tcpOutcome(t, "127.0.0.3", web); got != "closed" {
		t.Fatalf("after a failed reload 127.0.0.3: got %q, want closed (old rules)", got)
	}
	_ = w.d.Close()
}

// tcpOutcome connects from src, sends "hello" and reports the echoed line, or
// "closed" when the relay closed the connection without an answer.
func tcpOutcome(t *testing.T, src, addr string) string {
	t.Helper()
	c, err := dialLine(t, src, addr)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	line, err := c.roundTrip("hello")
	if err != nil {
		return "closed"
	}
	return line
}

// TestACLFileErrorsNameKeyAndPath: an ACL file that is missing or cannot be
// read rejects the reload with a log line naming the config key and the
// path it resolved to (relative to the config's folder), each once.
func TestACLFileErrorsNameKeyAndPath(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	const yaml = "admin: {listen: \"\"}\n%slisteners:\n  - {name: web, mode: tcp, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n"
	port, backend := freePort(t, "tcp"), newTCPEcho(t, "web")
	w := startWorld(t, fmt.Sprintf(yaml, "", port, backend.addr()), nil)
	if err := os.Mkdir(filepath.Join(w.dir, "rules.d"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, want string }{
		{"missing_hba.conf", `acl.file: open ` + filepath.Join(w.dir, "missing_hba.conf") + `: no such file or directory`},
		{"rules.d", `acl.file: read ` + filepath.Join(w.dir, "rules.d") + `: is a directory`},
	} {
		w.writeFile("relay.yaml", fmt.Sprintf(yaml, "acl: {file: "+tc.file+"}\n", port, backend.addr()))
		if err := w.d.Reload(); err == nil {
			t.Fatalf("reload with acl.file %s succeeded", tc.file)
		}
		line := w.logs.Wait(t, "ACL rejected", tc.file)
		if !strings.Contains(line, tc.want) || strings.Count(line, filepath.Join(w.dir, tc.file)) != 1 {
			t.Errorf("log line %s\nwant it to say %s, the path once", line, tc.want)
		}
	}
}
