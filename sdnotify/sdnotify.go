// Package sdnotify tells systemd what the relay is doing, over the
// sd_notify(3) datagram protocol on $NOTIFY_SOCKET: ready, reloading,
// stopping, and a free-text status line. Its job ends at sending the
// datagram; deciding when the service is ready is the daemon's.
//
// Without $NOTIFY_SOCKET (not started by systemd, or a unit that is not
// Type=notify) a Notifier does nothing, so callers never need to check.
package sdnotify

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notifier sends state changes to the service manager. A nil *Notifier and
// one made with an empty socket path do nothing and return nil.
type Notifier struct {
	addr *net.UnixAddr // nil: no manager to tell

	// monotonic reads CLOCK_MONOTONIC; tests replace it to get exact
	// datagrams.
	monotonic func() (time.Duration, error)
}

// New returns a Notifier for the socket named by socketPath, normally
// os.Getenv("NOTIFY_SOCKET"). A name starting with '@' is a Linux abstract
// socket; the standard library maps the '@' to the leading NUL byte. An empty
// path gives a Notifier that does nothing. New opens no socket: each message
// dials afresh, since they are rare and systemd may restart in between.
func New(socketPath string) *Notifier {
	n := &Notifier{monotonic: monotonicNow}
	if socketPath != "" {
		n.addr = &net.UnixAddr{Name: socketPath, Net: "unixgram"}
	}
	return n
}

// Ready tells systemd that start-up (or a reload) has finished.
func (n *Notifier) Ready() error { return n.send("READY=1") }

// Reloading tells systemd that a reload has begun; send Ready when it ends.
// MONOTONIC_USEC lets systemd (version 253 and later, Type=notify-reload)
// tell this reload from an earlier one; older versions and Type=notify
// ignore it.
func (n *Notifier) Reloading() error {
	if n == nil || n.addr == nil {
		return nil
	}
	now, err := n.monotonic()
	if err != nil {
		return fmt.Errorf("sdnotify: read monotonic clock: %w", err)
	}
	usec := strconv.FormatInt(now.Microseconds(), 10)
	return n.send("RELOADING=1\nMONOTONIC_USEC=" + usec)
}

// Stopping tells systemd that shutdown has begun.
func (n *Notifier) Stopping() error { return n.send("STOPPING=1") }

// Status sets the one-line status shown by `systemctl status`. Line breaks
// would end the field early, so they are replaced by spaces.
func (n *Notifier) Status(status string) error {
	status = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(status)
	return n.send("STATUS=" + status)
}

// send writes msg as one datagram.
func (n *Notifier) send(msg string) error {
	if n == nil || n.addr == nil {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: dial %s: %w", n.addr.Name, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(msg)); err != nil {
		return fmt.Errorf("sdnotify: send to %s: %w", n.addr.Name, err)
	}
	return nil
}

// monotonicNow reads CLOCK_MONOTONIC, the clock systemd compares
// MONOTONIC_USEC with. Go's own monotonic readings are not exposed as an
// absolute value, so it asks the kernel.
func monotonicNow() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, err
	}
	return time.Duration(ts.Nano()), nil
}
