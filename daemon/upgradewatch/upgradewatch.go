// Package upgradewatch tells `relay upgrade` how the binary upgrade it
// asked for ended, as soon as the running relay knows: its main types are
// Watcher (the command's end) and Reporter (the relay's end), and the one
// message between them is an Outcome. It does not run upgrades (package
// daemon does) nor judge success: `relay upgrade` still takes "another
// process alone holds the address" from /proc as the proof that the new
// process serves. What only the old relay knows is why a new process did
// not: without this the command waited its whole -timeout for a failure
// the relay had logged 50 ms after the signal.
//
// The channel is an abstract Unix socket, "@relay-upgrade-PID" with the
// running relay's pid, that the command listens on before it sends
// SIGUSR2; the relay dials it when it starts the upgrade and writes the
// outcome when it ends. Chosen over the alternatives because
//   - it needs no file and no directory: the shipped unit (DynamicUser,
//     ProtectSystem=strict) has no directory the relay may write without a
//     RuntimeDirectory=, and a relay run by hand has none that root's
//     `relay upgrade` and the relay's user share; abstract names live in
//     the network namespace, which the unit shares with the admin's shell
//     (AF_UNIX is in its RestrictAddressFamilies);
//   - it holds no state that outlives one invocation, so an outcome is
//     never an older attempt's: the relay dials only when an attempt
//     starts, and the name exists only while this command waits, so an
//     attempt that started before it listened (whose signal it did not
//     send) is never reported to it;
//   - the admin endpoint may be off, bound where the command's address is
//     refused by its ACL or Host check, and goes to the new process with
//     the other sockets;
//   - the relay opens nothing permanent: it only dials out, once per
//     upgrade, and a refused dial (nobody waits) costs a syscall.
//
// Both ends check the other with SO_PEERCRED: the command takes an answer
// only from the pid it signalled, and the relay tells only a listener
// running as root or as its own user (anyone in the network namespace may
// bind an abstract name first). When the name is taken, or the relay is
// too old to dial, the command falls back to watching /proc until its
// timeout, as before.
package upgradewatch

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Outcome is how an upgrade ended.
type Outcome struct {
	Served bool   `json:"served,omitempty"` // the new process serves; the old one stopped accepting
	Pid    int    `json:"pid,omitempty"`    // the new process's pid; 0 when none was started
	Binary string `json:"binary,omitempty"` // the binary started (or tried); empty when it was not found
	Reason string `json:"reason,omitempty"` // why the new process does not serve; empty when Served
}

// maxReason bounds the reason sent, well inside maxMessage: a config
// error names a path and a key, never kilobytes.
const maxReason = 8 << 10

// maxMessage bounds the one message read.
const maxMessage = 16 << 10

// name is the abstract socket name for the relay with pid: one per relay,
// so two relays upgraded at once are told apart, and a second command
// waiting for the same relay finds it taken (and falls back).
func name(pid int) *net.UnixAddr {
	return &net.UnixAddr{Name: fmt.Sprintf("@relay-upgrade-%d", pid), Net: "unixpacket"}
}

// Watcher is the end of `relay upgrade`: it listens for the relay it is
// about to signal.
type Watcher struct {
	relay int // the pid an outcome is taken from
	ln    *net.UnixListener
	conn  *net.UnixConn // the relay's, once it dialled; nil before
}

// Listen starts listening for the outcome of the relay with pid relay's
// next upgrade. Call it before sending the signal.
func Listen(relay int) (*Watcher, error) {
	ln, err := net.ListenUnix("unixpacket", name(relay))
	if err != nil {
		return nil, fmt.Errorf("upgradewatch: %w", err)
	}
	return &Watcher{relay: relay, ln: ln}, nil
}

// Wait waits up to d for the outcome and reports whether it came; it
// returns earlier only with one. A relay that hangs up without one (it
// was told to stop meanwhile, or died) leaves the Watcher waiting for the
// next dial. Connections from any other process than the relay's are
// closed unread.
func (w *Watcher) Wait(d time.Duration) (Outcome, bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if w.conn == nil {
			_ = w.ln.SetDeadline(deadline)
			c, err := w.ln.AcceptUnix()
			if err != nil {
				break // the deadline, or a closed listener: wait out d below
			}
			if pid, err := peerPid(c); err != nil || pid != w.relay {
				c.Close()
				continue
			}
			w.conn = c
		}
		_ = w.conn.SetReadDeadline(deadline)
		buf := make([]byte, maxMessage)
		n, err := w.conn.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		var o Outcome
		if err == nil {
			err = json.Unmarshal(buf[:n], &o)
		}
		w.conn.Close() // one message a dial
		w.conn = nil
		if err == nil {
			return o, true
		}
	}
	time.Sleep(time.Until(deadline)) // callers poll in a loop: never return early empty-handed
	return Outcome{}, false
}

// Close stops listening; the relay's dial, if it comes later, is refused.
func (w *Watcher) Close() error {
	if w.conn != nil {
		w.conn.Close()
	}
	return w.ln.Close()
}

// Reporter is the relay's end: the connection to a waiting Watcher. A nil
// Reporter reports nothing.
type Reporter struct {
	conn *net.UnixConn
}

// Dial connects to the Watcher waiting for the outcome of the relay with
// pid self (this process). It returns nil, nil when none waits, and an
// error when one does that may not be told (it runs as another user than
// root or this process's).
func Dial(self int) (*Reporter, error) {
	d := net.Dialer{Timeout: time.Second} // a Unix connect answers at once; never let a full backlog hold the upgrade
	c, err := d.Dial("unixpacket", name(self).String())
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("upgradewatch: %w", err)
	}
	uc := c.(*net.UnixConn)
	cred, err := peerCred(uc)
	if err != nil {
		uc.Close()
		return nil, err
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		uc.Close()
		return nil, fmt.Errorf("upgradewatch: pid %d (uid %d) waits at %s; it is neither root nor this relay's user, so it is not told", cred.Pid, cred.Uid, name(self))
	}
	return &Reporter{conn: uc}, nil
}

// Report sends the outcome and closes the connection.
func (r *Reporter) Report(o Outcome) error {
	if r == nil {
		return nil
	}
	defer r.conn.Close()
	if len(o.Reason) > maxReason {
		o.Reason = o.Reason[:maxReason] + "..."
	}
	b, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("upgradewatch: %w", err)
	}
	_ = r.conn.SetWriteDeadline(time.Now().Add(time.Second)) // one small message fits the socket's buffer; never block the relay
	if _, err := r.conn.Write(b); err != nil {
		return fmt.Errorf("upgradewatch: send the outcome: %w", err)
	}
	return nil
}

// Close hangs up without an outcome.
func (r *Reporter) Close() {
	if r != nil {
		r.conn.Close()
	}
}

// peerPid returns the pid of the process that connected c.
func peerPid(c *net.UnixConn) (int, error) {
	cred, err := peerCred(c)
	if err != nil {
		return 0, err
	}
	return int(cred.Pid), nil
}

// peerCred returns the credentials of c's peer as the kernel recorded them
// at connect (for a dialler) or listen (for a listener).
func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("upgradewatch: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, fmt.Errorf("upgradewatch: %w", err)
	}
	if credErr != nil {
		return nil, fmt.Errorf("upgradewatch: SO_PEERCRED: %w", credErr)
	}
	return cred, nil
}
