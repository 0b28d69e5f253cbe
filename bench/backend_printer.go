package main

import (
	"bufio"
	"net"
)

// A ticket printer's real-time status request (ESC/POS "DLE EOT n") is three
// bytes; the printer answers each with one status byte. The simulated
// printer answers statusReply(n), so the client can tell replies apart.
const (
	dle = 0x10
	eot = 0x04
)

func statusReply(n byte) byte { return 0x12 | n<<5 }

// printer answers status requests on one connection until EOF. Bytes that
// are not part of a request are ignored, as a printer would print them.
func printer(c *net.TCPConn) {
	r := bufio.NewReader(c)
	for {
		b, err := r.ReadByte()
		if err != nil {
			return
		}
		if b != dle {
			continue
		}
		if b, err = r.ReadByte(); err != nil {
			return
		}
		if b != eot {
			continue
		}
		n, err := r.ReadByte()
		if err != nil {
			return
		}
		if _, err := c.Write([]byte{statusReply(n)}); err != nil {
			return
		}
	}
}
