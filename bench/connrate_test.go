package main

import (
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestShortConnsWaitOutPortShortage: a connect refused for want of a
// local port (EADDRNOTAVAIL, the load generator's own limit) is tried
// again, not counted as the forwarder's failure; any other error is.
func TestShortConnsWaitOutPortShortage(t *testing.T) {
	noPort := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EADDRNOTAVAIL)}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	calls := 0
	conn := func(byte) error {
		calls++
		time.Sleep(time.Millisecond) // a few dozen connections in the window
		switch calls {
		case 2, 3, 4:
			return noPort
		case 6:
			return refused
		}
		return nil
	}
	ok, failed, first := shortConns(conn, time.Now().Add(60*time.Millisecond))
	if failed != 1 || first != refused || ok < 3 || ok != calls-4 {
		t.Errorf("ok %d, failed %d (first %v) in %d calls; want every call but the 3 port shortages and the 1 refusal ok, 1 failed", ok, failed, first, calls)
	}
}
