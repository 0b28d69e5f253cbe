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
	u := upgradeHolding(t, "shutdown_grace: 30s\n")
	old, logs, live, addr := u.old, u.logs, u.live, u.addr

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
	_ = syscall.Kill(u.successor, syscall.SIGTERM)
	logs.WaitCount(t, 1, "relay stopped")
}

// upgraded is a relay upgraded while a client held a connection to it.
type upgraded struct {
	old       *relayProc // the process that handed its sockets over, draining live
	logs      *world.LogBuffer
	live      net.Conn // accepted by old, echoed once
	addr      string   // the listener's address
	successor int      // the new process's pid
}

// upgradeHolding starts a relay with one echoing listener and settings
// (YAML lines), opens a connection through it and upgrades it (SIGUSR2).
// The processes are killed when the test ends.
func upgradeHolding(t *testing.T, settings string) upgraded {
	t.Helper()
	backend := world.NewBackend(t, world.Echo)
	u := upgraded{addr: fmt.Sprintf("127.0.0.1:%d", world.ReserveTCPPort(t))}
	cfg := writeConfig(t, fmt.Sprintf("admin: {listen: \"\"}\nlog: {format: json}\n%s"+
		"listeners:\n  - {name: web, mode: tcp, listen: %q, upstream: %q}\n", settings, u.addr, backend.Addr()))
	u.old, u.logs = startCopy(t, cfg)
	t.Cleanup(func() { _ = u.old.cmd.Process.Kill() })
	live, err := net.Dial("tcp", u.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { live.Close() })
	if err := echoConn(live, "before"); err != nil {
		t.Fatal(err)
	}
	u.live = live
	u.successor = upgrade(t, u.old.cmd.Process.Pid, u.logs, 1)
	t.Cleanup(func() { _ = syscall.Kill(u.successor, syscall.SIGKILL) })
	return u
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

// TestSIGTERMDuringUpgradeWait: a SIGTERM that reaches a relay while it
// waits for the new process of an upgrade to serve (a new binary that
// hangs at its start) stops it, with its drain, and ends the new process.
// The wait (up to 30 s) ran in the signal loop, so the relay ignored the
// SIGTERM until it gave up, and then drained for shutdown_grace: more
// than the unit's TimeoutStopSec, after which systemd killed it.
func TestSIGTERMDuringUpgradeWait(t *testing.T) {
	binary, _ := installSelf(t)
	backend := world.NewBackend(t, world.Echo)
	addr := fmt.Sprintf("127.0.0.1:%d", world.ReserveTCPPort(t))
	cfg := writeConfig(t, fmt.Sprintf("admin: {listen: \"\"}\nlog: {format: json}\nshutdown_grace: 5s\n"+
		"listeners:\n  - {name: web, mode: tcp, listen: %q, upstream: %q}\n", addr, backend.Addr()))
	old := startInstalled(t, binary, cfg)
	logs := &world.LogBuffer{}
	go collectLines(old.logs, logs)
	waiting := true
	defer func() {
		if waiting {
			_ = old.cmd.Process.Kill()
			_ = old.cmd.Wait()
		}
	}()

	installBinary(t, binary, []byte("#!/bin/sh\nexec sleep 60\n")) // never answers
	if err := old.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	successor := successorPID(t, logs)
	defer func() { _ = syscall.Kill(successor, syscall.SIGKILL) }() // ours, whatever the relay did
	if err := echoOnce(addr, "while the upgrade waits"); err != nil {
		t.Fatalf("while the upgrade waits: %v", err)
	}
	_ = old.cmd.Process.Signal(syscall.SIGTERM)
	waiting = false
	done := make(chan error, 1)
	go func() { done <- old.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("relay: %v, want exit 0 after its drain", err)
		}
	case <-time.After(10 * time.Second):
		_ = old.cmd.Process.Kill()
		<-done
		t.Fatal("a relay waiting for its upgrade's new process ignored SIGTERM for 10 s")
	}
	logs.Wait(t, "relay stopped")
	if syscall.Kill(successor, 0) == nil { // the relay reaped it: gone, not a zombie
		t.Errorf("the new process %d still runs after the relay stopped", successor)
	}
}
