package main

import (
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// TestUpgradedDrainHardStopSaysSo: the process an upgrade replaced cuts
// what is left open at reload.hard_stop_after, as a reload's retired
// listener does, and says so (how many, and why), as that one does; it cut
// them without a word, and a box office saw its tunnel drop for no reason
// the log gave.
func TestUpgradedDrainHardStopSaysSo(t *testing.T) {
	backend := world.NewBackend(t, world.Echo)
	addr := fmt.Sprintf("127.0.0.1:%d", world.ReserveTCPPort(t))
	cfg := writeConfig(t, fmt.Sprintf("admin: {listen: \"\"}\nlog: {format: json}\nreload: {hard_stop_after: 500ms}\n"+
		"listeners:\n  - {name: web, mode: tcp, listen: %q, upstream: %q}\n", addr, backend.Addr()))
	old, logs := startCopy(t, cfg)
	defer func() { _ = old.cmd.Process.Kill() }()
	live, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if err := echoConn(live, "held"); err != nil {
		t.Fatal(err)
	}
	successor := upgrade(t, old.cmd.Process.Pid, logs, 1)
	defer func() { _ = syscall.Kill(successor, syscall.SIGKILL) }()
	logs.Wait(t, "reload.hard_stop_after reached", `"cut":1`)
	_ = live.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := live.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the held connection after hard_stop_after: %v, want EOF", err)
	}
	if err := old.cmd.Wait(); err != nil {
		t.Errorf("old process: %v, want exit 0", err)
	}
	_ = syscall.Kill(successor, syscall.SIGTERM)
}
