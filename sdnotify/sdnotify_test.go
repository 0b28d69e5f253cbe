package sdnotify

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen opens a unixgram socket standing in for systemd's notify socket.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %q: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// receive returns the next datagram, failing after a second.
func receive(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("read datagram: %v", err)
	}
	return string(buf[:n])
}

func TestDatagrams(t *testing.T) {
	for _, tc := range []struct {
		name string
		path func(t *testing.T) string
	}{
		{"path", func(t *testing.T) string { return filepath.Join(t.TempDir(), "notify") }},
		{"abstract", func(t *testing.T) string {
			return fmt.Sprintf("@relay-sdnotify-test-%d-%d", time.Now().UnixNano(), len(t.Name()))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path(t)
			sock := listen(t, path)
			n := New(path)
			n.monotonic = func() (time.Duration, error) { return 1234567890 * time.Microsecond, nil }

			steps := []struct {
				send func() error
				want string
			}{
				{n.Ready, "READY=1"},
				{n.Reloading, "RELOADING=1\nMONOTONIC_USEC=1234567890"},
				{func() error { return n.Status("serving 6 listeners\nreloaded") }, "STATUS=serving 6 listeners reloaded"},
				{n.Stopping, "STOPPING=1"},
			}
			for i, s := range steps {
				if err := s.send(); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if got := receive(t, sock); got != s.want {
					t.Errorf("step %d: datagram %q, want %q", i, got, s.want)
				}
			}
		})
	}
}

// TestReloadingClock checks MONOTONIC_USEC against the kernel's
// CLOCK_MONOTONIC, which is what systemd compares it with.
func TestReloadingClock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	sock := listen(t, path)
	before, err := monotonicNow()
	if err != nil {
		t.Fatal(err)
	}
	if err := New(path).Reloading(); err != nil {
		t.Fatal(err)
	}
	after, _ := monotonicNow()

	got := receive(t, sock)
	value, ok := strings.CutPrefix(got, "RELOADING=1\nMONOTONIC_USEC=")
	if !ok {
		t.Fatalf("datagram %q", got)
	}
	usec, err := strconv.ParseInt(value, 10, 64)
	if err != nil {
		t.Fatalf("MONOTONIC_USEC %q: %v", value, err)
	}
	if usec < before.Microseconds() || usec > after.Microseconds() {
		t.Errorf("MONOTONIC_USEC=%d outside [%d, %d]", usec, before.Microseconds(), after.Microseconds())
	}
}

func TestNoSocketDoesNothing(t *testing.T) {
	for name, n := range map[string]*Notifier{"empty path": New(""), "nil": nil} {
		for _, send := range []func() error{n.Ready, n.Reloading, n.Stopping, func() error { return n.Status("x") }} {
			if err := send(); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

func TestMissingSocketErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent")
	err := New(path).Ready()
	if err == nil || !strings.HasPrefix(err.Error(), "sdnotify: dial "+path) {
		t.Fatalf("error %v, want a dial error naming %s", err, path)
	}
}

// TestMainPIDWaitsForBarrier: MainPID sends MAINPID and READY, then a
// BARRIER=1 with a pipe, and returns only once the manager closed the pipe.
func TestMainPIDWaitsForBarrier(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	sock := listen(t, path)
	n := New(path)
	done := make(chan error, 1)
	go func() { done <- n.MainPID(4242) }()
	if got := receive(t, sock); got != "MAINPID=4242\nREADY=1" {
		t.Fatalf("first datagram %q", got)
	}
	_ = sock.SetReadDeadline(time.Now().Add(time.Second))
	buf, oob := make([]byte, 64), make([]byte, unix.CmsgSpace(4))
	k, oobn, _, _, err := sock.ReadMsgUnix(buf, oob)
	if err != nil || string(buf[:k]) != "BARRIER=1" {
		t.Fatalf("barrier datagram %q %v", buf[:k], err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages %v %v", msgs, err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("rights %v %v", fds, err)
	}
	select {
	case err := <-done:
		t.Fatalf("MainPID returned %v before the barrier's pipe was closed", err)
	case <-time.After(50 * time.Millisecond):
	}
	unix.Close(fds[0])
	if err := <-done; err != nil {
		t.Fatalf("MainPID = %v", err)
	}
}
