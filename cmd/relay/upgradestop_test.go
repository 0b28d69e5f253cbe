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

// TestSecondSignalStopsUpgradedDrain: a process that handed its sockets to
// a new one and drains a connection stops at once at a second SIGTERM, as
// a drain after the first one does: after the first, the drain is bounded
// by shutdown_grace (30 s here), and the second was swallowed.
func TestSecondSignalStopsUpgradedDrain(t *testing.T) {
	backend := world.NewBackend(t, world.Echo)
	addr := fmt.Sprintf("127.0.0.1:%d", world.ReserveTCPPort(t))
	cfg := writeConfig(t, fmt.Sprintf("admin: {listen: \"\"}\nlog: {format: json}\nshutdown_grace: 30s\n"+
		"listeners:\n  - {name: web, mode: tcp, listen: %q, upstream: %q}\n", addr, backend.Addr()))
	old, logs := startCopy(t, cfg)
	defer func() { _ = old.cmd.Process.Kill() }()
	live, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if err := echoConn(live, "before"); err != nil {
		t.Fatal(err)
	}
	successor := upgrade(t, old.cmd.Process.Pid, logs, 1)
	defer func() { _ = syscall.Kill(successor, syscall.SIGKILL) }()

	_ = old.cmd.Process.Signal(syscall.SIGTERM) // the drain now ends within shutdown_grace
	logs.Wait(t, "stopping: draining the connections left from before the upgrade")
	if err := echoConn(live, "draining"); err != nil {
		t.Fatalf("the drained connection after the first SIGTERM: %v", err)
	}
	start := time.Now()
	_ = old.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- old.cmd.Wait() }()
	select {
	case <-done:
		t.Logf("stopped %v after the second SIGTERM", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		_ = old.cmd.Process.Kill()
		<-done
		t.Fatal("the upgraded process still drains 10 s after a second SIGTERM")
	}
	if err := echoOnce(addr, "successor"); err != nil {
		t.Fatalf("the new process after the old one stopped: %v", err)
	}
	_ = syscall.Kill(successor, syscall.SIGTERM)
	logs.WaitCount(t, 1, "relay stopped")
}

// echoConn writes msg on c and reads it back.
func echoConn(c net.Conn, msg string) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		return fmt.Errorf("echo %q: %v", buf, err)
	}
	return nil
}
