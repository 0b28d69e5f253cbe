package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// TestSIGHUPWhileStarting: a SIGHUP that reaches a relay still reading its
// config (a `killall -HUP relay` during a start or an upgrade's new
// process) is a reload once it serves, not the end of the process: the
// handlers were installed only after the config was loaded, and the
// default action of SIGHUP killed it. The config is a FIFO here, so the
// relay is held in its open until the test writes it.
func TestSIGHUPWhileStarting(t *testing.T) {
	backend := world.NewBackend(t, world.Echo)
	port := world.ReserveTCPPort(t)
	yaml := fmt.Sprintf("admin: {listen: \"\"}\nlog: {format: json}\n"+
		"listeners:\n  - {name: web, mode: tcp, listen: \"127.0.0.1:%d\", upstream: %q}\n", port, backend.Addr())
	fifo := filepath.Join(t.TempDir(), "relay.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	cmd, stderr := runChild(t, fifo)
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	logs := bufio.NewReader(stderr)
	world.Eventually(t, "the relay waits in the open of its config", func() bool {
		return blockedInFIFOOpen(cmd.Process.Pid)
	})
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	writeFIFO(t, fifo, yaml)
	waitLog(t, logs, "relay started")
	writeFIFO(t, fifo, yaml) // the reload the SIGHUP asked for reads it again
	waitLog(t, logs, "reload applied")
	if err := echoOnce(fmt.Sprintf("127.0.0.1:%d", port), "after"); err != nil {
		t.Fatalf("after the reload: %v", err)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	go func() { _, _ = io.Copy(io.Discard, logs) }()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("relay: %v, want exit 0", err)
	}
}

// writeFIFO writes text to the FIFO once its reader has opened it (an open
// for writing without a reader fails with O_NONBLOCK, and a blocking one
// would wait forever for a relay that died).
func writeFIFO(t *testing.T, fifo, text string) {
	t.Helper()
	var f *os.File
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if f, err = os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("nobody reads the config: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// blockedInFIFOOpen reports whether a thread of pid waits in the open of
// a FIFO for its writer.
func blockedInFIFOOpen(pid int) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/wchan", pid))
	for _, w := range tasks {
		b, _ := os.ReadFile(w)
		if strings.TrimSpace(string(b)) == "wait_for_partner" {
			return true
		}
	}
	return false
}

// TestSIGTERMWhileStarting: a relay that does not serve yet still ends at
// SIGTERM (there is nothing to drain), even while reading its config.
func TestSIGTERMWhileStarting(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "relay.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	cmd, stderr := runChild(t, fifo)
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	world.Eventually(t, "the relay waits in the open of its config", func() bool {
		return blockedInFIFOOpen(cmd.Process.Pid)
	})
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if !strings.Contains(fmt.Sprint(err), "terminated") {
			t.Errorf("relay: %v, want ended by SIGTERM", err)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("a relay reading its config ignored SIGTERM")
	}
}

// TestSIGTERMDuringBlockedReload: a SIGTERM that comes while a reload waits
// for its config (here a FIFO nobody writes; in the field a file on a hung
// network mount) stops the relay, with its drain, and a live connection
// still gets its bytes meanwhile. The reload ran in the signal loop, so the
// relay ignored every SIGTERM until the read returned: systemctl stop waited
// out TimeoutStopSec and then killed it, cutting every connection.
func TestSIGTERMDuringBlockedReload(t *testing.T) {
	backend := world.NewBackend(t, world.Echo)
	port := world.ReserveTCPPort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := writeConfig(t, fmt.Sprintf("admin: {listen: \"\"}\nshutdown_grace: 5s\nlog: {format: json}\n"+
		"listeners:\n  - {name: web, mode: tcp, listen: %q, upstream: %q}\n", addr, backend.Addr()))
	cmd, logs := startChild(t, cfg)
	waiting := true // the child is ours to end and wait for
	defer func() {
		if waiting {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()

	fifo := cfg + ".fifo"
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if err := os.Rename(fifo, cfg); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	world.Eventually(t, "the reload waits in the open of the config", func() bool {
		return blockedInFIFOOpen(cmd.Process.Pid)
	})
	if err := echoOnce(addr, "while the reload waits"); err != nil {
		t.Fatalf("while the reload waits: %v", err)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	waiting = false
	var rest []byte
	done := make(chan error, 1)
	go func() {
		rest, _ = io.ReadAll(logs) // until the child exits
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("relay: %v, want exit 0 after its drain", err)
		}
		if !strings.Contains(string(rest), "stopping: draining") || !strings.Contains(string(rest), "relay stopped") {
			t.Errorf("the relay did not drain and stop; it logged:\n%s", rest)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("a relay whose reload waits for its config ignored SIGTERM for 10 s")
	}
}

// TestLogReaderGoneKeepsForwarding: a relay whose log reader goes away (a
// `relay ... | logger` whose logger is restarted, a log pipe of a
// supervisor that died) keeps forwarding and stops at SIGTERM as usual;
// its log lines are lost meanwhile. Go ends a process that writes to a
// broken pipe on stderr with SIGPIPE unless the signal is caught: the
// next log line (an access line) cut every connection the relay had.
func TestLogReaderGoneKeepsForwarding(t *testing.T) {
	backend := world.NewBackend(t, world.Echo)
	addr := fmt.Sprintf("127.0.0.1:%d", world.ReserveTCPPort(t))
	cfg := writeConfig(t, fmt.Sprintf("admin: {listen: \"\"}\nlog: {format: json}\n"+
		"listeners:\n  - {name: web, mode: tcp, listen: %q, upstream: %q}\n", addr, backend.Addr()))
	cmd := exec.Command(os.Args[0], "-config", cfg)
	cmd.Env = append(os.Environ(), "GO_WANT_RELAY_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waiting := true
	defer func() {
		if waiting {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	waitLog(t, bufio.NewReader(stderr), "relay started")
	stderr.Close()     // the log reader goes
	for i := range 3 { // each connection logs an access line when it ends
		if err := echoOnce(addr, fmt.Sprintf("after the log reader left %d", i)); err != nil {
			t.Fatalf("connection %d after the log reader left: %v", i, err)
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	waiting = false
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("relay: %v, want exit 0", err)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("relay still runs 10 s after SIGTERM")
	}
}
