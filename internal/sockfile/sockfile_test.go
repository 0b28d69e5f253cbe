package sockfile

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDupKeepsNonblocking: taking a listener over from the duplicate
// (net.FileListener calls Fd) leaves the shared socket non-blocking; the
// standard File method's duplicate does not.
func TestDupKeepsNonblocking(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := Dup(ln.(*net.TCPListener), "test")
	if err != nil {
		t.Fatal(err)
	}
	succ, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer succ.Close()
	if blocking(t, ln) {
		t.Fatal("the socket went blocking after the successor took its duplicate")
	}
	// The pitfall Dup avoids, so the test shows it is real.
	g, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	g.Fd()
	g.Close()
	if !blocking(t, ln) {
		t.Skip("this Go no longer switches a File's socket to blocking mode in Fd")
	}
}

func blocking(t *testing.T, ln net.Listener) bool {
	t.Helper()
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var flags int
	_ = rc.Control(func(fd uintptr) { flags, _ = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	return flags&unix.O_NONBLOCK == 0
}
