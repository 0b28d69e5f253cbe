package main

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// TestUpgradeCmdUDPFirst: relay upgrade on a config whose first listener is
// UDP, with a UDP session open, says the upgrade succeeded once the new
// process serves. The old process keeps that UDP socket for its session's
// replies until the session expires (session_timeout, 60 s here), so "only
// another process holds the first address" never came within -timeout:
// relay upgrade said the old pid "still serves" and exited 1 after a
// successful upgrade. It now watches a TCP socket (a TCP listener's, else
// the admin endpoint's), which the old process closes when it yields.
func TestUpgradeCmdUDPFirst(t *testing.T) {
	upstream, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer upstream.Close()
	go udpEchoServer(upstream)
	backend := world.NewBackend(t, world.Echo)
	udpAddr := fmt.Sprintf("127.0.0.1:%d", world.ReserveUDPPort(t))
	tcpAddr := fmt.Sprintf("127.0.0.1:%d", world.ReserveTCPPort(t))
	cfg := writeConfig(t, fmt.Sprintf("admin: {listen: \"\"}\nlog: {format: json}\nlisteners:\n"+
		"  - {name: rtb, mode: udp, listen: %q, upstream: %q, udp: {session_timeout: 60s}}\n"+
		"  - {name: web, mode: tcp, listen: %q, upstream: %q}\n",
		udpAddr, upstream.LocalAddr(), tcpAddr, backend.Addr()))
	old, logs := startCopy(t, cfg)
	defer func() { _ = old.cmd.Process.Kill() }()

	client, err := net.Dial("udp", udpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Write([]byte("session")); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 64)); err != nil {
		t.Fatalf("no UDP echo before the upgrade: %v", err)
	}

	code, stdout, stderr := runCmd("upgrade", "-config", cfg, "-timeout", "10s")
	line := logs.WaitCount(t, 1, "the new process serves")[0]
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("in place of pid %d", old.cmd.Process.Pid)) {
		t.Errorf("relay upgrade: exit %d, stdout %q, stderr %q; want 0 and the old pid replaced (relay: %s)",
			code, stdout, stderr, line)
	}
	if !strings.Contains(stdout, "tcp "+tcpAddr) {
		t.Errorf("relay upgrade watched %q, want the TCP listener's tcp %s", stdout, tcpAddr)
	}
	_ = old.cmd.Process.Signal(syscall.SIGKILL) // its session would hold it 60 s
	_ = old.cmd.Wait()
	stopSuccessor(t, logs)
}

// stopSuccessor stops the process the first upgrade in logs started.
func stopSuccessor(t *testing.T, logs *world.LogBuffer) {
	t.Helper()
	_ = syscall.Kill(successorPID(t, logs), syscall.SIGTERM)
}

// successorPID returns the pid of the process the first upgrade in logs
// started.
func successorPID(t *testing.T, logs *world.LogBuffer) int {
	t.Helper()
	line := logs.WaitCount(t, 1, "new process started")[0]
	m := regexp.MustCompile(`"pid":(\d+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no pid in %s", line)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

// TestUpgradeCmdEmptyHost: a listen address written ":PORT" (every
// address, as config accepts it) is looked up as [::]:PORT, where the relay
// binds it; relay upgrade refused it as an address ("missing IP") before it
// looked for the relay at all. Nothing is bound here: with no relay on the
// port it must say that no process holds it (it said "cannot tell which
// relay serves tcp :PORT (holders: [])", as if there were several).
func TestUpgradeCmdEmptyHost(t *testing.T) {
	port := world.ReserveTCPPort(t)
	cfg := writeConfig(t, fmt.Sprintf("admin: {listen: \"\"}\nlisteners:\n"+
		"  - {name: web, mode: tcp, listen: \":%d\", upstream: \"127.0.0.1:9\"}\n", port))
	code, _, stderr := runCmd("upgrade", "-config", cfg, "-timeout", "1s")
	if want := fmt.Sprintf("no process holds tcp :%d, the first listen address of %s: is relay running with this config?", port, cfg); code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
}

// TestUpgradeCmdOldRelayGone: when the relay being upgraded dies before a
// new one serves (here: killed while its new binary hangs), relay upgrade
// says at once that nobody serves the address any more; it waited out
// -timeout and then said the dead pid "still serves".
func TestUpgradeCmdOldRelayGone(t *testing.T) {
	binary, _ := installSelf(t)
	backend := world.NewBackend(t, world.Echo)
	addr := fmt.Sprintf("127.0.0.1:%d", world.ReserveTCPPort(t))
	cfg := writeConfig(t, fmt.Sprintf("admin: {listen: \"\"}\nlisteners:\n  - {name: web, mode: tcp, listen: %q, upstream: %q}\n",
		addr, backend.Addr()))
	old := startInstalled(t, binary, cfg)
	logs := &world.LogBuffer{}
	go collectLines(old.logs, logs)
	defer func() { _ = old.cmd.Process.Kill(); _ = old.cmd.Wait() }()
	installBinary(t, binary, []byte("#!/bin/sh\nexec sleep 5\n")) // a new binary that does not answer (in time)

	type result struct {
		code   int
		stderr string
	}
	done := make(chan result, 1)
	go func() {
		// A timeout far beyond the test's: the message, not the clock, tells
		// "pid is gone" from "gave up waiting" (which says "still serves").
		// A bound of 5 s after the kill failed 1 run in 4 under a loaded
		// make test (6.5 s), though the command polls every 10 ms.
		code, _, stderr := runCmd("upgrade", "-config", cfg, "-timeout", "60s")
		done <- result{code, stderr}
	}()
	logs.Wait(t, "upgrade: new process started") // relay upgrade has found and signalled it
	_ = old.cmd.Process.Kill()
	killed := time.Now()
	r := <-done
	want := fmt.Sprintf("nobody serves tcp %s any more: pid %d is gone", addr, old.cmd.Process.Pid)
	if r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Errorf("exit %d %v after the kill, stderr %q; want 1 and %q", r.code, time.Since(killed).Round(time.Millisecond), r.stderr, want)
	}
}

// TestUpgradeCmdTimeoutAboveZero: -timeout 0 or below is a usage error; it
// was taken, and relay upgrade signalled the relay and gave up at once
// (exit 1) while the upgrade it started went on.
func TestUpgradeCmdTimeoutAboveZero(t *testing.T) {
	cfg := writeConfig(t, "listeners:\n  - {name: web, mode: tcp, listen: \"127.0.0.1:9\", upstream: \"127.0.0.1:10\"}\n")
	for d, want := range map[string]string{"0": "-timeout 0s: must be above zero", "-1s": "-timeout -1s: must be above zero"} {
		code, _, stderr := runCmd("upgrade", "-config", cfg, "-timeout", d)
		if code != 2 || !strings.Contains(stderr, want) {
			t.Errorf("-timeout %s: exit %d, stderr %q; want 2 and %q", d, code, stderr, want)
		}
	}
}

// TestUpgradeCmdSaysWhyAtOnce: a new binary that exits at once makes relay
// upgrade exit 1 as soon as the old relay knows, naming the reason; it
// waited its whole -timeout (30 s) and then said only that the old pid
// "still serves". Neither an attempt that failed before (another SIGUSR2)
// nor one still running when relay upgrade signals (its failure comes
// after) makes the upgrade that follows report a failure: relay upgrade is
// told only of an attempt that started after it listened.
func TestUpgradeCmdSaysWhyAtOnce(t *testing.T) {
	binary, self := installSelf(t)
	backend := world.NewBackend(t, world.Echo)
	addr := fmt.Sprintf("127.0.0.1:%d", world.ReserveTCPPort(t))
	cfg := writeConfig(t, fmt.Sprintf("admin: {listen: \"\"}\nlog: {format: json}\nlisteners:\n  - {name: web, mode: tcp, listen: %q, upstream: %q}\n",
		addr, backend.Addr()))
	old := startInstalled(t, binary, cfg)
	logs := &world.LogBuffer{}
	go collectLines(old.logs, logs)
	defer func() { _ = old.cmd.Process.Kill(); _ = old.cmd.Wait() }()
	oldPID := old.cmd.Process.Pid

	// A new binary that exits at once: the answer, with the default
	// -timeout of 30 s. The point is "not the timeout", so the bound sits
	// just below it: 5 s failed once at load average 7 (6.3 s), and the
	// message alone already tells a failure from giving up.
	installBinary(t, binary, []byte("#!/bin/sh\nexit 3\n"))
	start := time.Now()
	code, stdout, stderr := runCmd("upgrade", "-config", cfg)
	took := time.Since(start)
	want := regexp.MustCompile(fmt.Sprintf(`^relay upgrade: the new process \(pid \d+, %s\) failed: it exited before it was ready \(exit status 3\); pid %d serves on\n$`,
		regexp.QuoteMeta(binary), oldPID))
	if code != 1 || !want.MatchString(stderr) || stdout != "" || took > 25*time.Second {
		t.Errorf("relay upgrade with a binary that exits 3: exit %d after %v, stdout %q, stderr %q; want 1 before the 30s timeout and %s",
			code, took.Round(time.Millisecond), stdout, stderr, want)
	}
	t.Logf("%v: %s", took.Round(time.Millisecond), strings.TrimSpace(stderr))
	if err := echoOnce(addr, "old serves on"); err != nil {
		t.Fatalf("after the failed upgrade: %v", err)
	}

	// A good binary whose Start fails: the config, valid for relay
	// upgrade, adds a listener on a port another program holds. The new
	// process's reason comes through.
	installBinary(t, binary, self)
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	good, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, cfg, string(good)+fmt.Sprintf("  - {name: taken, mode: tcp, listen: %q, upstream: %q}\n", held.Addr(), backend.Addr()))
	code, _, stderr = runCmd("upgrade", "-config", cfg)
	if want := fmt.Sprintf("failed: listener taken: tcp %s is already in use", held.Addr()); code != 1 || !strings.Contains(stderr, want) || !strings.HasSuffix(stderr, fmt.Sprintf("; pid %d serves on\n", oldPID)) {
		t.Errorf("relay upgrade with a port the new process cannot bind: exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
	t.Log(strings.TrimSpace(stderr))
	writeFile(t, cfg, string(good))

	// An attempt that failed before, started by a bare SIGUSR2, then one
	// still running (its binary answers nothing for 3 s, then exits 4)
	// when relay upgrade signals, with the good binary installed meanwhile:
	// the attempt relay upgrade's signal starts serves, and it says so.
	installBinary(t, binary, []byte("#!/bin/sh\nexit 3\n"))
	_ = old.cmd.Process.Signal(syscall.SIGUSR2)
	logs.WaitCount(t, 3, "upgrade failed")
	installBinary(t, binary, []byte("#!/bin/sh\nsleep 3\nexit 4\n"))
	_ = old.cmd.Process.Signal(syscall.SIGUSR2)
	logs.WaitCount(t, 4, "new process started")
	installBinary(t, binary, self)
	code, stdout, stderr = runCmd("upgrade", "-config", cfg)
	m := regexp.MustCompile(fmt.Sprintf(`^relay upgraded: pid (\d+) serves tcp %s in place of pid %d after `, regexp.QuoteMeta(addr), oldPID)).FindStringSubmatch(stdout)
	if code != 0 || m == nil || stderr != "" {
		t.Fatalf("relay upgrade after failed attempts: exit %d, stdout %q, stderr %q; want 0 and the success line\n%s", code, stdout, stderr, logs)
	}
	if line := logs.WaitCount(t, 4, "upgrade failed")[3]; !strings.Contains(line, "exit status 4") {
		t.Errorf("the attempt running when relay upgrade signalled: %s; want its exit status 4", line)
	}
	newPID, _ := strconv.Atoi(m[1])
	_ = syscall.Kill(newPID, syscall.SIGTERM)
	logs.Wait(t, "relay stopped")
}
