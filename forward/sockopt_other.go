//go:build !linux

package forward

import (
	"net"
	"syscall"
	"time"
)

func upstreamKeepAlive() net.KeepAliveConfig { return net.KeepAliveConfig{Enable: true} }

func listenControl(freebind bool) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error { return nil }
}

func setDeviceOptions(c net.Conn, userTimeout time.Duration) error {
	if tc, ok := c.(*net.TCPConn); ok {
		return tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: userTimeout})
	}
	return nil
}
