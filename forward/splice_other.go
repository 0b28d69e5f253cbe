//go:build !linux

package forward

import "net"

// Without splice(2) every Pipe uses the buffer copy.

const bigPipeSize = 0

type spliceBuf struct{ n, big int }

func pipeBudget() int { return 0 }

func newSpliceBuf(int) (*spliceBuf, error) { return nil, errSpliceUnsupported }

func (*spliceBuf) close() {}

func canSplice(net.Conn, net.Conn) bool { return false }

func (d *direction) splice() error { return errSpliceUnsupported }
