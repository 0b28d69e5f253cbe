package daemon

import (
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestPrivilegedPortSaysWhatGrantsIt: a bind refused for a port below 1024
// (relay started by a user without CAP_NET_BIND_SERVICE) says what grants
// the port, as README's "Running it" does; it said only "bind: permission
// denied". The error is still EACCES, and a refusal for another port (a
// security module, say) is left as it is.
func TestPrivilegedPortSaysWhatGrantsIt(t *testing.T) {
	refused := func(port int) error {
		return &net.OpError{Op: "listen", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port},
			Err: os.NewSyscallError("bind", syscall.EACCES)}
	}
	err := inUse("tcp", refused(80))
	if !errors.Is(err, syscall.EACCES) || !strings.Contains(err.Error(), "tcp 127.0.0.1:80") ||
		!strings.Contains(err.Error(), "CAP_NET_BIND_SERVICE") || !strings.Contains(err.Error(), "setcap cap_net_bind_service=+ep") {
		t.Errorf("port 80: %v", err)
	}
	if err := inUse("tcp", refused(8080)); strings.Contains(err.Error(), "CAP_NET_BIND_SERVICE") || !errors.Is(err, syscall.EACCES) {
		t.Errorf("port 8080: %v", err)
	}
}
