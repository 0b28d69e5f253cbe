package forward

import (
	"net"
	"net/netip"
	"time"
)

// Raw configures raw mode.
type Raw struct {
	Exclusive    bool
	QueueTimeout time.Duration
	UserTimeout  time.Duration
}

type rawState struct{}

func newRawState(r *Raw, ports int) *rawState { return &rawState{} }

func (l *Listener) serveRaw(c *net.TCPConn, client netip.AddrPort, index int) {
	l.forwardConn(c, client, index)
}
