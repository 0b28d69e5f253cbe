//go:build !linux

package forward

import (
	"net"
	"syscall"
)

// Elsewhere a rawTCP is never in use: its callers read and write
// through the conn's own Read and Write.
type rawTCP struct {
	conn net.Conn
	raw  syscall.RawConn
}

func (*rawTCP) init(net.Conn)                 {}
func (s *rawTCP) read(p []byte) (int, error)  { return s.conn.Read(p) }
func (s *rawTCP) write(b []byte) (int, error) { return s.conn.Write(b) }
