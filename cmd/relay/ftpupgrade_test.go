package main

import (
	"fmt"
	"sync"
	"syscall"
	"testing"

	"github.com/edgerelay/relay/internal/world"
)

// TestUpgradeHandsOverFTPDataPool: the data-port table goes to the new
// process with the listen sockets. Across an upgrade, with a three-port
// range of which the old process holds two (one carrying a transfer, one
// answered to a PASV and not yet connected), every PASV the new process
// answers names the third port, first try, and no process logs a port held
// by someone else; the transfer started before the upgrade, the one on the
// PASV answered before it and one through the new process arrive intact,
// and the old process exits 0 once its sessions end.
func TestUpgradeHandsOverFTPDataPool(t *testing.T) {
	g := make(gate)
	var once sync.Once
	openGate := func() { once.Do(func() { close(g) }) }
	defer openGate()
	backend := world.NewBackend(t, ftpBackend(g))
	ftpPort, data := world.ReserveTCPPort(t), world.ReserveTCPPortRun(t, 3)
	ftpAddr := fmt.Sprintf("127.0.0.1:%d", ftpPort)
	cfg := writeConfig(t, fmt.Sprintf("admin: {listen: \"\"}\nlog: {format: json}\nlisteners:\n"+
		"  - {name: files, mode: ftp, listen: %q, upstream: %q, ftp: {data_ports: \"%d-%d\"}}\n",
		ftpAddr, backend.Addr(), data, data+2))
	old, logs := startCopy(t, cfg)
	defer func() { _ = old.cmd.Process.Kill() }()

	// Before the upgrade: a transfer under way (A) and a PASV answered (B).
	const size = 1 << 20
	a, err := dialFTP(ftpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	aData, err := a.pasv()
	if err != nil {
		t.Fatal(err)
	}
	aStarted, aDone := make(chan struct{}), make(chan error, 1)
	go func() { aDone <- a.retr(aData, size, 1, aStarted) }()
	select {
	case <-aStarted:
	case err := <-aDone:
		t.Fatalf("transfer A: %v", err)
	}
	b, err := dialFTP(ftpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	bData, err := b.pasv()
	if err != nil {
		t.Fatal(err)
	}
	if aData == bData {
		t.Fatalf("A and B were both given %s", aData)
	}

	next := upgrade(t, old.cmd.Process.Pid, logs, 1)
	defer func() { _ = syscall.Kill(next, syscall.SIGKILL) }()

	// The new process has one free port left.
	c, err := dialFTP(ftpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var cData string
	for i := range 10 {
		if cData, err = c.pasv(); err != nil {
			t.Fatalf("PASV %d through the new process: %v", i, err)
		}
		if cData == aData || cData == bData {
			t.Fatalf("PASV %d through the new process: %s, which the old process holds (%s, %s)", i, cData, aData, bData)
		}
	}
	openGate()
	if err := c.retr(cData, size, 3, nil); err != nil {
		t.Errorf("transfer C (new process): %v", err)
	}
	if err := b.retr(bData, size, 2, nil); err != nil {
		t.Errorf("transfer B (PASV before the upgrade): %v", err)
	}
	if err := <-aDone; err != nil {
		t.Errorf("transfer A (started before the upgrade): %v", err)
	}
	for _, s := range []*ftpClient{a, b, c} {
		if err := s.quit(); err != nil {
			t.Error(err)
		}
	}
	if err := old.cmd.Wait(); err != nil {
		t.Errorf("old process: %v, want exit 0 once its sessions ended", err)
	}
	if n := logs.Count("held by another program"); n != 0 {
		t.Errorf("%d bind conflicts on data ports logged:\n%s", n, logs)
	}
	_ = syscall.Kill(next, syscall.SIGTERM)
	logs.WaitCount(t, 2, "relay stopped")
}
