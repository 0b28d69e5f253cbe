package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// inUse turns a bind that failed because the port is taken into one line
// that names the address and, where /proc tells, the process holding it:
// a second relay on the same config must say why it cannot start. Other
// errors are returned as they are.
func inUse(proto string, err error) error {
	var op *net.OpError
	if !errors.Is(err, syscall.EADDRINUSE) || !errors.As(err, &op) || op.Addr == nil {
		return err
	}
	ap, perr := netip.ParseAddrPort(op.Addr.String())
	if perr != nil {
		return err
	}
	who := holder(proto, ap)
	if who == "" {
		who = "another socket (its owner is not visible to this user)"
	}
	return fmt.Errorf("%s %s is already in use by %s: %w", proto, ap, who, syscall.EADDRINUSE)
}
