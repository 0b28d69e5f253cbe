package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// installBinary copies this test binary (which runs main under
// GO_WANT_RELAY_MAIN=1) to path the way a package upgrade does: a new file
// renamed over the old, which a running process may still execute.
func installBinary(t testing.TB, path string, contents []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, contents, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// installSelf installs a copy of this test binary as "relay" in a
// temporary folder and returns its path and contents (to install again
// after a test replaced it).
func installSelf(t testing.TB) (binary string, self []byte) {
	t.Helper()
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	binary = filepath.Join(t.TempDir(), "relay")
	installBinary(t, binary, self)
	return binary, self
}

// relayProc is a relay started from an installed binary; its log (and that
// of every process an upgrade starts, which inherits it) is read from logs.
type relayProc struct {
	cmd  *exec.Cmd
	logs *bufio.Reader
}

func startInstalled(t testing.TB, binary, cfg string) *relayProc {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	cmd := exec.Command(binary, "-config", cfg)
	cmd.Env = append(os.Environ(), "GO_WANT_RELAY_MAIN=1")
	cmd.Stderr = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	p := &relayProc{cmd: cmd, logs: bufio.NewReader(r)}
	waitLog(t, p.logs, "relay started")
	return p
}

// startCopy installs a copy of this test binary in a temporary directory
// and starts it on cfg. Its log (and that of the processes its upgrades
// start) is read into the returned buffer all along: every connection
// writes a line, and a full pipe would stop the relays.
func startCopy(t testing.TB, cfg string) (*relayProc, *world.LogBuffer) {
	t.Helper()
	binary, _ := installSelf(t)
	p := startInstalled(t, binary, cfg)
	logs := &world.LogBuffer{}
	go collectLines(p.logs, logs)
	return p, logs
}

// dialer keeps opening short connections to addr and checks each echoes;
// it counts the ones that failed in any way.
type dialer struct {
	ok, failed atomic.Int64
	lastErr    atomic.Value
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startDialer(addr string) *dialer {
	d := &dialer{stop: make(chan struct{})}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for i := 0; i < 100000; i++ {
			select {
			case <-d.stop:
				return
			default:
			}
			if err := echoOnce(addr, fmt.Sprintf("short %d", i)); err != nil {
				d.failed.Add(1)
				d.lastErr.Store(err.Error())
				continue
			}
			d.ok.Add(1)
		}
	}()
	return d
}

func (d *dialer) finish(t *testing.T, phase string) {
	t.Helper()
	close(d.stop)
	d.wg.Wait()
	if n := d.failed.Load(); n > 0 {
		t.Errorf("%s: %d of %d short connections failed, the last: %v", phase, n, n+d.ok.Load(), d.lastErr.Load())
	}
	if d.ok.Load() == 0 {
		t.Errorf("%s: no short connection got through", phase)
	}
}

func echoOnce(addr, msg string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	_ = c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// TestUpgrade: SIGUSR2 with a binary that exits at once, then with a config
// the new binary rejects, leaves the running relay serving and says why;
// with both good, the new process takes the sockets over, the old one
// finishes its live connection and exits 0, and no short connection opened
// throughout is refused or reset.
func TestUpgrade(t *testing.T) {
	binary, self := installSelf(t)
	backend := world.NewBackend(t, world.Echo)
	port := world.ReserveTCPPort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	good := fmt.Sprintf("admin: {listen: \"\"}\nlog: {format: json}\n"+
		"listeners:\n  - {name: web, mode: tcp, listen: %q, upstream: %q}\n", addr, backend.Addr())
	cfg := writeConfig(t, good)
	old := startInstalled(t, binary, cfg)
	defer func() { _ = old.cmd.Process.Kill() }()
	// Read the log all along: every connection writes a line, and a full
	// pipe would stop the relays.
	logs := &world.LogBuffer{}
	go collectLines(old.logs, logs)

	live, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	roundTrip := func(c net.Conn, msg string) error {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, msg); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			return fmt.Errorf("echo %q %v", buf, err)
		}
		return nil
	}
	if err := roundTrip(live, "before"); err != nil {
		t.Fatal(err)
	}

	// A binary that exits at once.
	installBinary(t, binary, []byte("#!/bin/sh\nexit 3\n"))
	load := startDialer(addr)
	// relay upgrade sends the signal and is told why nobody took over.
	code, _, stderr := runCmd("upgrade", "-config", cfg)
	if want := fmt.Sprintf("exited before it was ready (exit status 3); pid %d serves on", old.cmd.Process.Pid); code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("relay upgrade with a failing binary: exit %d, %q; want 1 and %q", code, stderr, want)
	}
	line := logs.WaitCount(t, 1, "upgrade failed")[0]
	if !regexp.MustCompile(`exited before it was ready \(exit status 3\)`).MatchString(line) {
		t.Errorf("failed upgrade does not say why: %s", line)
	}
	load.finish(t, "failing binary")

	// A config the new binary rejects.
	installBinary(t, binary, self)
	if err := os.WriteFile(cfg, []byte("listeners: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	load = startDialer(addr)
	_ = old.cmd.Process.Signal(syscall.SIGUSR2)
	line = logs.WaitCount(t, 2, "upgrade failed")[1]
	if !regexp.MustCompile(`relay\.yaml:`).MatchString(line) {
		t.Errorf("failed upgrade does not name the config error: %s", line)
	}
	load.finish(t, "broken config")
	if err := roundTrip(live, "still"); err != nil {
		t.Fatalf("live connection after failed upgrades: %v", err)
	}

	// Both good.
	if err := os.WriteFile(cfg, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	load = startDialer(addr)
	code, stdout, stderr := runCmd("upgrade", "-config", cfg)
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("in place of pid %d", old.cmd.Process.Pid)) {
		t.Fatalf("relay upgrade: exit %d, %q %q\n%s", code, stdout, stderr, logs)
	}
	line = logs.WaitCount(t, 3, "new process started")[2]
	newPID, _ := strconv.Atoi(regexp.MustCompile(`"pid":(\d+)`).FindStringSubmatch(line)[1])
	defer func() { _ = syscall.Kill(newPID, syscall.SIGKILL) }()
	if !strings.Contains(stdout, fmt.Sprintf("relay upgraded: pid %d serves", newPID)) {
		t.Errorf("relay upgrade names another successor: %q, want pid %d", stdout, newPID)
	}
	logs.Wait(t, "the new process serves")
	t.Log(strings.TrimSpace(stdout))
	load.finish(t, "upgrade")
	if err := roundTrip(live, "after"); err != nil {
		t.Fatalf("live connection after the upgrade: %v", err)
	}
	if err := echoOnce(addr, "new process"); err != nil {
		t.Fatalf("after the upgrade: %v", err)
	}
	live.Close()
	if err := old.cmd.Wait(); err != nil {
		t.Fatalf("old process: %v, want exit 0 once its connection ended", err)
	}
	if err := echoOnce(addr, "old one gone"); err != nil {
		t.Fatalf("after the old process exited: %v", err)
	}
	_ = syscall.Kill(newPID, syscall.SIGTERM)
	logs.WaitCount(t, 2, "relay stopped")
}
