package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/relay/daemon"
	"github.com/edgerelay/relay/internal/world"
)

// TestUpgradeCmdSignalsOnlyTheRelayOfTheConfig: relay upgrade signals the
// process holding the config's address only when that process is a relay
// serving that config file. A program that is no relay (here one that just
// listens on the port) was sent SIGUSR2, whose default action ended it;
// a relay serving another config file would have been upgraded instead.
// The program's command line is quoted in the message: its newlines and
// escape sequences went to the terminal raw.
func TestUpgradeCmdSignalsOnlyTheRelayOfTheConfig(t *testing.T) {
	port := world.ReserveTCPPort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// Its command line has what a program's may: a newline, an escape
	// sequence. relay upgrade names it in one line, escaped.
	holder := exec.Command(os.Args[0], "-c", "listen\n\x1b[31mon the port")
	holder.Env = append(os.Environ(), "GO_WANT_LISTEN="+addr)
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = holder.Wait() }()
	world.Eventually(t, "the other program listens", func() bool {
		return len(holdersOf(t, addr)) == 1
	})

	cfg := writeConfig(t, fmt.Sprintf("admin: {listen: \"\"}\nlisteners:\n"+
		"  - {name: web, mode: tcp, listen: %q, upstream: \"127.0.0.1:9\"}\n", addr))
	code, _, stderr := runCmd("upgrade", "-config", cfg, "-timeout", "1s")
	if want := fmt.Sprintf("pid %d", holder.Process.Pid); code != 1 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "not signalled") {
		t.Errorf("exit %d, stderr %q; want 1, naming %s, not signalled", code, stderr, want)
	}
	if strings.Count(stderr, "\n") != 1 || strings.Contains(stderr, "\x1b") {
		t.Errorf("the other program's command line went out raw: %q", stderr)
	}
	time.Sleep(100 * time.Millisecond) // a signal, had one been sent, is delivered by now
	if pids := holdersOf(t, addr); len(pids) != 1 || pids[0] != holder.Process.Pid {
		t.Fatalf("the program holding the port is gone (holders now %v)", pids)
	}

	// A relay started on a copy of the config in another folder (the same
	// text, another file) is not the one relay upgrade -config FILE means.
	stdin.Close()
	_ = holder.Wait()
	other := filepath.Join(t.TempDir(), "relay.yaml")
	text, _ := os.ReadFile(cfg)
	if err := os.WriteFile(other, text, 0o644); err != nil {
		t.Fatal(err)
	}
	relay, logs := startCopy(t, other)
	defer func() { _ = relay.cmd.Process.Kill(); _ = relay.cmd.Wait() }()
	code, _, stderr = runCmd("upgrade", "-config", cfg, "-timeout", "1s")
	if code != 1 || !strings.Contains(stderr, "not signalled") {
		t.Errorf("a relay of another config file: exit %d, stderr %q; want 1, not signalled", code, stderr)
	}
	code, stdout, stderr := runCmd("upgrade", "-config", other, "-timeout", "10s")
	if code != 0 {
		t.Errorf("relay upgrade of its own config: exit %d, %q %q", code, stdout, stderr)
	}
	logs.Wait(t, "the new process serves")
	stopSuccessor(t, logs)
}

// holdersOf returns the pids holding the TCP listen address addr.
func holdersOf(t *testing.T, addr string) []int {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return daemon.Holders("tcp", ap)
}

// listenUntilStdinCloses is the program of GO_WANT_LISTEN: it listens on
// the address until its stdin closes, and ends at SIGUSR2 as most programs
// do (the default action; a Go program ignores it).
func listenUntilStdinCloses(addr string) int {
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	go func() {
		<-usr2
		os.Exit(3)
	}()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer ln.Close()
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}
