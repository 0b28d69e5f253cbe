package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestReloadRefusesAliasBomb: a reload onto a file whose aliases expand to
// hundreds of millions of values (it grew a running relay past 1.4 GiB) is
// refused at once, with one error, and the listener in force keeps serving.
func TestReloadRefusesAliasBomb(t *testing.T) {
	echo := newTCPEcho(t, "web")
	at := fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	good := fmt.Sprintf("admin: {listen: \"\"}\nlisteners:\n  - {name: web, mode: tcp, listen: %q, upstream: %q}\n", at, echo.addr())
	w := startWorld(t, good, nil)

	var bomb strings.Builder
	bomb.WriteString("x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for c := 'b'; c <= 'i'; c++ {
		p := string(c - 1)
		fmt.Fprintf(&bomb, "x-%c: &%c [*%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s]\n", c, c, p, p, p, p, p, p, p, p, p)
	}
	w.writeFile("relay.yaml", bomb.String()+good)
	start := time.Now()
	err := w.d.Reload()
	if err == nil || !strings.Contains(err.Error(), "aliases expand to more than") {
		t.Fatalf("reload: %v, want the alias bound", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("reload took %v to refuse the bomb", took)
	}
	if got := tcpOutcome(t, "", at); got != "web:hello" {
		t.Fatalf("listener after the refused reload: %q", got)
	}
}
