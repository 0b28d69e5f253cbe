//go:build !linux

package forward

import (
	"net"
	"syscall"
)

// Elsewhere recordConn uses its conn's own Read and Write.
type rawIO struct{}

func rawIOConn(net.Conn) syscall.RawConn             { return nil }
func (r *recordConn) rawRead(p []byte) (int, error)  { return r.Conn.Read(p) }
func (r *recordConn) rawWrite(b []byte) (int, error) { return r.Conn.Write(b) }
