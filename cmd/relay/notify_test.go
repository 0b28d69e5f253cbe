package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgerelay/relay/internal/world"
)

// fakeSystemd is the receiving end of $NOTIFY_SOCKET as systemd runs it
// for deploy/relay.service (Type=notify, NotifyAccess=main): it learns each
// datagram's sender from SCM_CREDENTIALS and answers BARRIER=1 by closing
// the pipe that comes with it.
type fakeSystemd struct {
	conn *net.UnixConn
	got  chan notifyMsg
}

type notifyMsg struct {
	pid  int
	text string
}

func startFakeSystemd(t *testing.T) (*fakeSystemd, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil || serr != nil {
		t.Fatalf("SO_PASSCRED: %v %v", err, serr)
	}
	s := &fakeSystemd{conn: conn, got: make(chan notifyMsg, 64)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.read() }()
	t.Cleanup(func() { conn.Close(); wg.Wait() })
	return s, path
}

// read passes every datagram on until the socket closes.
func (s *fakeSystemd) read() {
	defer close(s.got)
	buf, oob := make([]byte, 4096), make([]byte, 1024)
	for {
		n, oobn, _, _, err := s.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		m := notifyMsg{text: string(buf[:n])}
		cmsgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for i := range cmsgs {
			if cred, err := unix.ParseUnixCredentials(&cmsgs[i]); err == nil {
				m.pid = int(cred.Pid)
			}
			if fds, err := unix.ParseUnixRights(&cmsgs[i]); err == nil {
				for _, fd := range fds {
					unix.Close(fd) // BARRIER=1: systemd closes it once read
				}
			}
		}
		s.got <- m
	}
}

// expect waits for the next datagram and checks its sender and that it
// starts with prefix.
func (s *fakeSystemd) expect(t *testing.T, pid int, prefix string) notifyMsg {
	t.Helper()
	select {
	case m := <-s.got:
		if m.pid != pid || !strings.HasPrefix(m.text, prefix) {
			t.Fatalf("sd_notify: got %q from pid %d, want %q from pid %d", m.text, m.pid, prefix, pid)
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("sd_notify: no %q from pid %d", prefix, pid)
	}
	return notifyMsg{}
}

// TestUpgradeNotifiesSystemd follows what systemd sees over $NOTIFY_SOCKET
// through start, reload, binary upgrade and stop: READY=1 from the first
// process; RELOADING=1 then READY=1 for a reload; for the upgrade,
// RELOADING=1, then MAINPID=<new>, READY=1 and BARRIER=1, all from the
// process that is the main one at the time (NotifyAccess=main drops the
// rest), after a failed upgrade (RELOADING=1, READY=1) has left the old one
// in place; the new process says nothing before that, the old one nothing
// after (its STOPPING=1 would stop the service under NotifyAccess=all), and
// the new one reloads and stops as the main process. A real systemd cannot
// run here (it is not PID 1 in the test environment).
func TestUpgradeNotifiesSystemd(t *testing.T) {
	sd, sock := startFakeSystemd(t)
	t.Setenv("NOTIFY_SOCKET", sock)
	backend := world.NewBackend(t, world.Echo)
	addr := fmt.Sprintf("127.0.0.1:%d", world.ReserveTCPPort(t))
	cfg := writeConfig(t, fmt.Sprintf("admin: {listen: \"\"}\nlog: {format: json}\n"+
		"listeners:\n  - {name: web, mode: tcp, listen: %q, upstream: %q}\n", addr, backend.Addr()))
	old, logs := startCopy(t, cfg)
	oldPID := old.cmd.Process.Pid
	defer func() { _ = old.cmd.Process.Kill() }()

	sd.expect(t, oldPID, "READY=1")
	_ = syscall.Kill(oldPID, syscall.SIGHUP)
	sd.expect(t, oldPID, "RELOADING=1\nMONOTONIC_USEC=")
	sd.expect(t, oldPID, "READY=1")

	// A new binary that exits at once: the old process stays the main one
	// and says it is ready again.
	self, err := os.ReadFile(old.cmd.Path)
	if err != nil {
		t.Fatal(err)
	}
	installBinary(t, old.cmd.Path, []byte("#!/bin/sh\nexit 3\n"))
	_ = syscall.Kill(oldPID, syscall.SIGUSR2)
	sd.expect(t, oldPID, "RELOADING=1")
	sd.expect(t, oldPID, "READY=1")
	logs.Wait(t, "upgrade failed")
	installBinary(t, old.cmd.Path, self)

	next := upgrade(t, oldPID, logs, 1)
	defer func() { _ = syscall.Kill(next, syscall.SIGKILL) }()
	sd.expect(t, oldPID, "RELOADING=1")
	if m := sd.expect(t, oldPID, "MAINPID="); m.text != fmt.Sprintf("MAINPID=%d\nREADY=1", next) {
		t.Fatalf("sd_notify: %q, want MAINPID=%d and READY=1", m.text, next)
	}
	sd.expect(t, oldPID, "BARRIER=1")
	if err := old.cmd.Wait(); err != nil {
		t.Errorf("old process: %v, want exit 0", err)
	}
	if err := echoOnce(addr, "new main process"); err != nil {
		t.Fatal(err)
	}

	_ = syscall.Kill(next, syscall.SIGHUP)
	sd.expect(t, next, "RELOADING=1")
	sd.expect(t, next, "READY=1")
	_ = syscall.Kill(next, syscall.SIGTERM)
	sd.expect(t, next, "STOPPING=1")
	logs.WaitCount(t, 2, "relay stopped")
	select {
	case m := <-sd.got:
		t.Errorf("sd_notify: unexpected %q from pid %d after the last process stopped", m.text, m.pid)
	case <-time.After(100 * time.Millisecond):
	}
}
