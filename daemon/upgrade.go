package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/edgerelay/relay/daemon/handoff"
	"github.com/edgerelay/relay/daemon/upgradewatch"
)

// A binary upgrade (SIGUSR2, as nginx does) starts the binary found at this
// process's path again, with the same arguments, and hands it every listen
// socket over a Unix socket pair (package handoff): TCP, raw and FTP control
// listeners, UDP ports and the admin endpoint, and the FTP data-port tables
// (dataports.go). The new process takes them
// over by address exactly as a reload does, binds what is new, and answers
// ready or why not. Only then does the old process stop accepting and
// drain; until then both accept on the same sockets, so no client is
// refused. A new binary that fails, or a config it rejects, leaves the old
// process serving, and the error says why.
//
// FTP data ports are not listen sockets of the listener: each is bound for
// one transfer of one session and stays with the process that runs the
// session. What is handed over is the data-port table both processes pick
// from, so the new process never picks a port the old one still holds.

// EnvUpgradeFD names the variable that tells the new process which of its
// descriptors is its end of the handoff channel. It is outside the RELAY_
// namespace, which config reads as config keys.
const EnvUpgradeFD = "UPGRADE_HANDOFF_FD"

// upgradeTimeout bounds how long Upgrade waits for the new process to say
// it serves: loading the config and binding take milliseconds.
const upgradeTimeout = 30 * time.Second

// adminProto is the handoff name's protocol for the admin endpoint's socket.
const adminProto = "admin"

// Upgrade starts the new process and hands the listen sockets over. On
// success this process has stopped accepting (its listeners no longer read
// the sockets) and the caller drains it with Shutdown; systemd is told the
// new main PID, which Upgrade returns (to pass on a reload asked for
// meanwhile). On failure nothing has changed. When stop is done before
// the new process serves (a SIGTERM meanwhile), Upgrade ends it and
// returns, so the caller can stop instead of waiting up to upgradeTimeout.
func (d *Daemon) Upgrade(stop context.Context) (int, error) {
	d.reloading.Lock()
	defer d.reloading.Unlock()
	if d.notify != nil {
		_ = d.notify.Reloading()
	}
	// relay upgrade, when it sent the signal, waits to be told how this
	// attempt ends (package upgradewatch); dialled now, at the start, so
	// that a command that began listening after an attempt started is
	// never told that attempt's outcome.
	watcher, werr := upgradewatch.Dial(os.Getpid())
	if werr != nil {
		d.log.Warn().Err(werr).Msg("upgrade: relay upgrade is not told the outcome; it waits until another process serves")
	}
	defer watcher.Close()
	pid, err := d.upgrade(stop)
	if errors.Is(err, errUpgradeStopped) {
		d.log.Warn().Err(err).Msg("upgrade abandoned: this process is stopping")
		return 0, err // relay upgrade sees this process go
	}
	if err != nil {
		d.log.Error().Err(err).Msg("upgrade failed; this process serves on")
		if werr := watcher.Report(failedOutcome(err)); werr != nil {
			d.log.Warn().Err(werr).Msg("upgrade: could not tell relay upgrade why")
		}
		if d.notify != nil {
			_ = d.notify.Ready()
		}
		return 0, err
	}
	if m, ok := d.notify.(interface{ MainPID(int) error }); ok {
		d.handedOver.Store(true)
		if err := m.MainPID(pid); err != nil {
			d.log.Warn().Err(err).Int("pid", pid).Msg("upgrade: could not tell systemd the new main PID")
		}
	}
	d.yield()
	d.log.Info().Int("pid", pid).Msg("upgrade: the new process serves; this one stopped accepting and drains")
	_ = watcher.Report(upgradewatch.Outcome{Served: true, Pid: pid}) // relay upgrade sees it in /proc too
	return pid, nil
}

// upgradeError is why an upgrade failed, with the new process it started
// (pid 0: none was), kept apart for relay upgrade's message.
type upgradeError struct {
	pid    int
	binary string // empty when this process's own path was not found
	err    error
}

func (e *upgradeError) Error() string {
	if e.pid == 0 {
		return "upgrade: " + e.err.Error()
	}
	return fmt.Sprintf("upgrade: new process %d (%s): %v", e.pid, e.binary, e.err)
}

func (e *upgradeError) Unwrap() error { return e.err }

// failedOutcome is what relay upgrade is told of a failed upgrade.
func failedOutcome(err error) upgradewatch.Outcome {
	var ue *upgradeError
	if !errors.As(err, &ue) {
		return upgradewatch.Outcome{Reason: err.Error()}
	}
	return upgradewatch.Outcome{Pid: ue.pid, Binary: ue.binary, Reason: ue.err.Error()}
}

// errUpgradeStopped ends an upgrade whose process was told to stop.
var errUpgradeStopped = errors.New("stopped before the new process served")

// upgrade runs the new process and returns its pid once it says it serves.
func (d *Daemon) upgrade(stop context.Context) (int, error) {
	exe, err := os.Executable() // the path, also after a package replaced the file
	if err != nil {
		return 0, &upgradeError{err: fmt.Errorf("find own binary: %w", err)}
	}
	socks, err := d.listenSockets()
	defer func() {
		for _, s := range socks {
			s.File.Close()
		}
	}()
	if err != nil {
		return 0, &upgradeError{binary: exe, err: err}
	}
	conn, peer, err := handoff.Pair()
	if err != nil {
		return 0, &upgradeError{binary: exe, err: err}
	}
	defer conn.Close()
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), EnvUpgradeFD+"=3") // ExtraFiles[0] is fd 3
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{peer}
	err = cmd.Start()
	peer.Close()
	if err != nil {
		return 0, &upgradeError{binary: exe, err: fmt.Errorf("start %s: %w", exe, err)}
	}
	pid := cmd.Process.Pid
	d.log.Info().Str("binary", exe).Int("pid", pid).Int("sockets", len(socks)).
		Msg("upgrade: new process started; handing the listen sockets over")
	answer := make(chan error, 1)
	go func() {
		if err := conn.SendSockets(socks); err != nil {
			answer <- err
			return
		}
		answer <- conn.Answer()
	}()
	select {
	case err = <-answer:
	case <-time.After(upgradeTimeout):
		err = fmt.Errorf("no answer in %v", upgradeTimeout)
	case <-stop.Done():
		err = errUpgradeStopped // and the new process goes, as on a timeout
	}
	if err == nil {
		_ = cmd.Process.Release()
		return pid, nil
	}
	conn.Close() // ends the sender if it still waits
	_ = cmd.Process.Kill()
	status := cmd.Wait()
	if errors.Is(err, handoff.ErrNoAnswer) || isPipeGone(err) {
		err = fmt.Errorf("it exited before it was ready (%v)", status)
	}
	return 0, &upgradeError{pid: pid, binary: exe, err: err}
}

// isPipeGone reports a send to a new process that had already exited.
func isPipeGone(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// listenSockets duplicates the listen sockets of the running listeners and
// of the admin endpoint, named as the config writes their addresses, and
// the FTP data-port tables.
func (d *Daemon) listenSockets() ([]handoff.Socket, error) {
	d.mu.Lock()
	adm, adminAt := d.admin, d.adminAt
	d.mu.Unlock()
	var out []handoff.Socket
	for _, in := range d.runningNow() {
		src, ok := in.srv.(interface{ Files() ([]*os.File, error) })
		if !ok {
			continue
		}
		files, err := src.Files()
		if err != nil {
			return out, fmt.Errorf("listener %s: %w", in.spec.Name, err)
		}
		for i, f := range files {
			out = append(out, handoff.Socket{Proto: in.spec.Mode.Proto(), Addr: in.spec.Listen[i], File: f})
		}
	}
	tables, err := d.dataPorts.files()
	out = append(out, tables...)
	if err != nil {
		return out, err
	}
	if adm != nil {
		f, err := adm.File()
		if err != nil {
			return out, fmt.Errorf("admin endpoint: %w", err)
		}
		out = append(out, handoff.Socket{Proto: adminProto, Addr: adminAt, File: f})
	}
	return out, nil
}

// yield makes every running listener stop reading its sockets, which the
// new process reads now: TCP listeners close their duplicates, UDP relays
// stop reading and keep answering their open sessions; their upstream
// Sets stop checking and logging. The admin endpoint closes. What they
// have open drains in Shutdown.
func (d *Daemon) yield() {
	for _, in := range d.runningNow() {
		switch s := in.srv.(type) {
		case interface{ Yield() }:
			s.Yield()
		case interface{ StopAccepting() }:
			s.StopAccepting()
		}
		in.ups.Retire() // the new process checks and reports the upstreams
	}
	d.stopAdmin()
}

// runningNow returns the running listeners, to act on without d.mu.
func (d *Daemon) runningNow() []*instance {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*instance, 0, len(d.running))
	for _, in := range d.running {
		out = append(out, in)
	}
	return out
}

// Takeover is the new process's half of an upgrade: the sockets the old
// process handed over and the channel on which it waits for the outcome.
type Takeover struct {
	conn  *handoff.Conn
	socks sockets
}

// TakeoverFromEnv receives the sockets when this process was started by
// Upgrade ($UPGRADE_HANDOFF_FD set), and returns nil, nil when it was not.
func TakeoverFromEnv() (*Takeover, error) {
	v := os.Getenv(EnvUpgradeFD)
	if v == "" {
		return nil, nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("upgrade: %s=%q is not a descriptor", EnvUpgradeFD, v)
	}
	f := os.NewFile(uintptr(fd), "handoff")
	conn, err := handoff.FromFile(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	list, err := conn.ReceiveSockets()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	t := &Takeover{conn: conn, socks: make(sockets)}
	for _, s := range list {
		t.socks[sockKey{s.Proto, s.Addr}] = s.File
	}
	return t, nil
}

// Report tells the old process the outcome of loading the config and Start
// (nil: this process serves, the old one may stop accepting), then closes
// the channel and whatever sockets were not taken over. A nil Takeover does
// nothing.
func (t *Takeover) Report(err error) {
	if t == nil {
		return
	}
	if err == nil {
		_ = t.conn.Ready()
	} else {
		_ = t.conn.Fail(err)
	}
	t.conn.Close()
	t.socks.close()
}
