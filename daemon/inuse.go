package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// inUse turns a bind that failed because the port is taken into one line
// that names the address and, where /proc tells, the process holding it:
// a second relay on the same config must say why it cannot start. A bind
// refused for a privileged port says what grants it (privileged). Other
// errors are returned as they are.
func inUse(proto string, err error) error {
	if perr := privileged(proto, err); perr != nil {
		return perr
	}
	ap, ok := inUseAddr(err)
	if !ok {
		return err
	}
	who := holder(proto, ap)
	if who == "" {
		who = "another socket (its owner is not visible to this user)"
	}
	return fmt.Errorf("%s %s is already in use by %s: %w", proto, ap, who, syscall.EADDRINUSE)
}

// inUseAddr returns the address of a bind that failed because the port is
// taken.
func inUseAddr(err error) (netip.AddrPort, bool) {
	var op *net.OpError
	if !errors.Is(err, syscall.EADDRINUSE) || !errors.As(err, &op) || op.Addr == nil {
		return netip.AddrPort{}, false
	}
	ap, perr := netip.ParseAddrPort(op.Addr.String())
	return ap, perr == nil
}

// heldByItself explains a reload's bind that failed on a port this relay
// holds itself: a retiring listener on an overlapping address of the same
// port (0.0.0.0:80 before, 192.168.1.5:80 now), whose socket the new one
// cannot take over, and beside which it cannot bind (relay never shares a
// port). Other errors are returned as inUse words them.
func heldByItself(proto string, err error) error {
	if ap, ok := inUseAddr(err); ok && slices.Contains(Holders(proto, ap), os.Getpid()) {
		return fmt.Errorf("%s %s is held by this relay itself, on an overlapping address of the same port: "+
			"a reload cannot move a port between a wildcard address and one of its own (restart, "+
			"or remove the listener in one reload and add it in the next): %w", proto, ap, syscall.EADDRINUSE)
	}
	return inUse(proto, err)
}

// privileged explains a bind refused (EACCES) for a port below the
// kernel's first unprivileged one (net.ipv4.ip_unprivileged_port_start,
// 1024 unless changed): root or CAP_NET_BIND_SERVICE grants it. nil for
// other errors.
func privileged(proto string, err error) error {
	var op *net.OpError
	if !errors.Is(err, syscall.EACCES) || !errors.As(err, &op) || op.Addr == nil {
		return nil
	}
	ap, perr := netip.ParseAddrPort(op.Addr.String())
	start := unprivilegedPortStart()
	if perr != nil || int(ap.Port()) >= start {
		return nil
	}
	bin, xerr := os.Executable()
	if xerr != nil {
		bin = "relay"
	}
	return fmt.Errorf("%s %s: a port below %d needs root or the capability CAP_NET_BIND_SERVICE "+
		"(sudo setcap cap_net_bind_service=+ep %s; the systemd unit grants it): %w",
		proto, ap, start, bin, syscall.EACCES)
}

// notLocal explains a listener's bind refused (EADDRNOTAVAIL) because
// none of the box's interfaces has the address, which on the BACKUP of an
// HA pair arrives only with a failover: freebind binds it before, in the
// words relay check warns with. nil for other errors.
func notLocal(proto string, err error) error {
	var op *net.OpError
	if !errors.Is(err, syscall.EADDRNOTAVAIL) || !errors.As(err, &op) || op.Addr == nil {
		return nil
	}
	ap, perr := netip.ParseAddrPort(op.Addr.String())
	if perr != nil {
		return nil
	}
	return fmt.Errorf("%s %s is not an address of this box: the listener cannot bind until it has it; "+
		"on the backup of an HA pair set freebind: true: %w", proto, ap, syscall.EADDRNOTAVAIL)
}

// unprivilegedPortStart reads net.ipv4.ip_unprivileged_port_start.
func unprivilegedPortStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 1024
	}
	return n
}
