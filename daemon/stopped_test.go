package daemon

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"
)

// TestReloadAfterShutdownBindsNothing: once Shutdown has begun, a Reload (a
// SIGHUP or a -watch change racing the SIGTERM) must not bind the listeners
// again: they would run with nobody to stop them, and a Shutdown still
// waiting for its goroutines would wait for them forever.
func TestReloadAfterShutdownBindsNothing(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	echo := newTCPEcho(t, "web")
	port := freePort(t, "tcp")
	at := fmt.Sprintf("127.0.0.1:%d", port)
	w := startWorld(t, adminOn(t)+fmt.Sprintf("shutdown_grace: 1s\nlisteners:\n"+
		"  - {name: web, mode: tcp, listen: %q, upstream: %q}\n", at, echo.addr()), nil)
	if err := w.d.Shutdown(t.Context()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := w.d.Reload(); err == nil {
		t.Error("Reload after Shutdown returned no error")
	}
	if c, err := net.DialTimeout("tcp", at, time.Second); err == nil {
		c.Close()
		t.Errorf("Reload after Shutdown bound %s again", at)
	}
	if a := w.d.AdminAddr(); a != "" {
		t.Errorf("Reload after Shutdown started the admin endpoint at %s", a)
	}
	_ = w.d.Close()
}
