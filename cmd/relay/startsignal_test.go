package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
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
