package forward

import (
	"net"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// TCP keepalive for both sides of a forwarded connection: first probe after
// 30 s of silence, then every 10 s, and the kernel's default of 9 probes, so
// a vanished peer is noticed about two minutes after the last byte, long
// before the idle timeout, and NAT state on the way stays warm. The count is
// left at the kernel default to save a setsockopt per upstream connection.
const (
	keepAliveIdle     = 30 * time.Second
	keepAliveInterval = 10 * time.Second
)

// upstreamKeepAlive is what the upstream dialer sets: SO_KEEPALIVE,
// TCP_KEEPIDLE and TCP_KEEPINTVL (Count -1 leaves TCP_KEEPCNT alone).
func upstreamKeepAlive() net.KeepAliveConfig {
	return net.KeepAliveConfig{
		Enable:   true,
		Idle:     keepAliveIdle,
		Interval: keepAliveInterval,
		Count:    -1,
	}
}

// setKeepAlive sets the relay's keepalive (keepAliveIdle,
// keepAliveInterval, the kernel's count) on the socket fd.
func setKeepAlive(fd int) error {
	for _, o := range [...]struct{ level, opt, val int }{
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(keepAliveIdle / time.Second)},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(keepAliveInterval / time.Second)},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.val); err != nil {
			return err
		}
	}
	return nil
}

// listenControl prepares a listen socket before bind: the keepalive
// options, which Linux copies to every accepted socket. Setting them here
// once replaces the four setsockopt calls Go would make on each accepted
// connection (the ListenConfig has KeepAlive -1 for that reason). There is
// no SO_REUSEPORT: a reload or an upgrade takes the socket over instead of
// binding beside it, and a second relay on the same port must fail. With
// freebind the socket may bind an address the box does not have yet.
func listenControl(freebind bool) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = setKeepAlive(int(fd)); serr != nil {
				return
			}
			if freebind {
				serr = setFreebind(int(fd), network)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}

// setFreebind lets the socket fd bind an address that no interface has yet
// (IP_FREEBIND, or IPV6_FREEBIND for a tcp6/udp6 socket): the backup box of
// a keepalived pair listens on the virtual address before it moves there,
// without the host-wide net.ipv4.ip_nonlocal_bind.
func setFreebind(fd int, network string) error {
	if strings.HasSuffix(network, "6") {
		return unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
	}
	return unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_FREEBIND, 1)
}

// setDeviceOptions prepares the upstream side of a raw connection to a
// small device: keepalive probes every third of userTimeout after a
// userTimeout of silence, and TCP_USER_TIMEOUT, which makes the kernel
// abort the connection when sent bytes (or zero-window probes, when the
// device stops reading) stay unacknowledged that long. Without it a
// powered-off printer holds the session for the ~15 minutes of TCP
// retransmission.
func setDeviceOptions(c net.Conn, userTimeout time.Duration) error {
	sc, ok := tcpOf(c).(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	secs := max(1, int(userTimeout/time.Second))
	intvl := max(1, secs/3)
	var serr error
	err = rc.Control(func(fd uintptr) {
		opts := []struct{ level, opt, val int }{
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, secs},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, intvl},
			{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 3},
			{unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(userTimeout / time.Millisecond)},
		}
		for _, o := range opts {
			if serr = unix.SetsockoptInt(int(fd), o.level, o.opt, o.val); serr != nil {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}
