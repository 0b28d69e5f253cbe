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

// MainPID tells systemd that pid, the process a binary upgrade started, is
// the service's main process from now on and is ready. It returns once
// systemd has read the message (BARRIER=1, up to barrierWait), so that this
// process may exit without systemd taking its exit for the service's.
func (n *Notifier) MainPID(pid int) error {
	if err := n.send(fmt.Sprintf("MAINPID=%d\nREADY=1", pid)); err != nil {
		return err
	}
	return n.barrier()
}

// barrierWait bounds how long MainPID waits for systemd to confirm.
const barrierWait = 5 * time.Second

// barrier sends BARRIER=1 with the write end of a pipe and waits until
// systemd, having handled every earlier message, closes its copy.
func (n *Notifier) barrier() error {
	if n == nil || n.addr == nil {
		return nil
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("sdnotify: barrier pipe: %w", err)
	}
	defer unix.Close(p[0])
	err := n.sendRights("BARRIER=1", p[1])
	unix.Close(p[1])
	if err != nil {
		return err
	}
	fds := []unix.PollFd{{Fd: int32(p[0]), Events: unix.POLLIN}}
	for deadline := time.Now().Add(barrierWait); ; {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("sdnotify: no barrier confirmation from %s in %v", n.addr.Name, barrierWait)
		}
		k, err := unix.Poll(fds, int(left/time.Millisecond)+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("sdnotify: barrier: %w", err)
		}
		if k > 0 && fds[0].Revents&(unix.POLLHUP|unix.POLLIN) != 0 {
			return nil
		}
	}
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
func (n *Notifier) send(msg string) error { return n.sendRights(msg, -1) }

// sendRights writes msg as one datagram, with fd attached unless it is -1.
func (n *Notifier) sendRights(msg string, fd int) error {
	if n == nil || n.addr == nil {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: dial %s: %w", n.addr.Name, err)
	}
	defer conn.Close()
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	// WriteMsgUnix refuses a connected datagram socket; sendmsg does not.
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("sdnotify: send to %s: %w", n.addr.Name, err)
	}
	var serr error
	if err := rc.Write(func(s uintptr) bool {
		serr = unix.Sendmsg(int(s), []byte(msg), oob, nil, 0)
		return serr != unix.EAGAIN
	}); err != nil {
		serr = err
	}
	if serr != nil {
		return fmt.Errorf("sdnotify: send to %s: %w", n.addr.Name, serr)
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
