package sdnotify

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
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
