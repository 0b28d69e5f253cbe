package main

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/edgerelay/relay/internal/world"
)

// TestSIGHUPDuringUpgradeReachesSuccessor: a SIGHUP that reaches the old
// process while it waits for the new one to serve (systemctl reload, or a
// saved file with -watch, during relay upgrade) is passed on to the new
// process, which reloads. The old process took it after the upgrade had
// succeeded, and dropped it: a config saved meanwhile was never applied.
func TestSIGHUPDuringUpgradeReachesSuccessor(t *testing.T) {
	binary, self := installSelf(t)
	backend := world.NewBackend(t, world.Echo)
	addr := fmt.Sprintf("127.0.0.1:%d", world.ReserveTCPPort(t))
	cfg := writeConfig(t, fmt.Sprintf("admin: {listen: \"\"}\nlog: {format: json}\n"+
		"listeners:\n  - {name: web, mode: tcp, listen: %q, upstream: %q}\n", addr, backend.Addr()))
	old := startInstalled(t, binary, cfg)
	logs := &world.LogBuffer{}
	go collectLines(old.logs, logs)
	defer func() { _ = old.cmd.Process.Kill(); _ = old.cmd.Wait() }()

	// The new binary takes a second to start: the SIGHUP comes meanwhile.
	installBinary(t, binary+".real", self)
	installBinary(t, binary, []byte("#!/bin/sh\nsleep 1\nexec "+binary+".real \"$@\"\n"))
	if err := old.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	logs.Wait(t, "upgrade: new process started")
	if err := old.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	logs.Wait(t, "the new process serves")
	successor := successorPID(t, logs)
	defer func() { _ = syscall.Kill(successor, syscall.SIGKILL) }()
	logs.Wait(t, "reload applied") // only the new process can reload now
	if n := logs.Count("reload applied"); n != 1 {
		t.Errorf("%d reloads, want the one the SIGHUP asked for", n)
	}
	_ = syscall.Kill(successor, syscall.SIGTERM)
	_ = os.Remove(binary + ".real")
}
