package daemon

import (
	"fmt"
	"strings"
	"testing"

	"github.com/edgerelay/relay/internal/world"
)

// TestReloadNarrowingWildcardSaysWhy: a reload that moves a listener from
// 0.0.0.0:PORT to 127.0.0.1:PORT cannot bind the new address while the
// old socket holds the port (relay never shares a port), so it changes
// nothing; the error says so, and how to get there, instead of "already in
// use by pid N (relay)", N being the relay itself, which sent the admin
// looking for a second relay. Run in a network namespace of its own: the
// wildcard address is bound there only.
func TestReloadNarrowingWildcardSaysWhy(t *testing.T) {
	if !world.RunInNetns(t) {
		return
	}
	web := newTCPEcho(t, "web")
	port := freePort(t, "tcp")
	render := func(host string) string {
		return fmt.Sprintf("admin: {listen: \"\"}\nlisteners:\n"+
			"  - {name: web, mode: tcp, listen: \"%s:%d\", upstream: \"%s\"}\n", host, port, web.addr())
	}
	w := startWorld(t, render("0.0.0.0"), nil)
	w.writeFile("relay.yaml", render("127.0.0.1"))
	err := w.d.Reload()
	if err == nil {
		t.Fatal("the reload bound 127.0.0.1 beside 0.0.0.0 on one port")
	}
	for _, want := range []string{fmt.Sprintf("127.0.0.1:%d", port), "this relay", "restart"} {
		if !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("reload error %q does not say %q on one line", err, want)
		}
	}
	c, err := dialLine(t, "", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("the listener after the refused reload: %v", err)
	}
	if got, err := c.roundTrip("still"); err != nil || got != "web:still" {
		t.Fatalf("the listener after the refused reload: %q %v", got, err)
	}
}
