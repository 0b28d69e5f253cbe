package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// process is one forwarder process the bench started. It runs in a process
// group of its own, so stopping it also stops the workers or per-connection
// children it forked, and nothing else.
//
// A relay's binary upgrade starts the next process itself: the bench
// adopts it (adoptProcess), knowing its pid, its group (the one it was
// born into) and its log (the old one's, inherited), but not its exit
// status.
type process struct {
	name     string
	cmd      *exec.Cmd // nil for an adopted process
	id       int
	group    int // process group, which stop signals
	logPath  string
	exited   chan struct{} // closed when the process has exited
	waitErr  error         // valid after exited is closed
	exitedAt time.Time     // valid after exited is closed
}

// startProcess runs argv with stdout and stderr going to dir/<name>.log.
func startProcess(dir, name string, argv ...string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own copy
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	p := &process{name: name, cmd: cmd, id: pid, group: pid, logPath: logPath, exited: make(chan struct{})}
	go p.reap()
	return p, nil
}

// reap waits for the process so that it never lingers as a zombie.
func (p *process) reap() {
	p.waitErr = p.cmd.Wait()
	p.exitedAt = time.Now()
	close(p.exited)
}

// adoptProcess follows a process the bench did not start (a relay's
// upgrade started it) until it exits, through a pidfd: another process
// reaps it, and its pid alone could be reused meanwhile.
func adoptProcess(name string, pid int, logPath string) (*process, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("follow %s (pid %d): %w", name, pid, err)
	}
	group, err := syscall.Getpgid(pid)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("follow %s (pid %d): process group: %w", name, pid, err)
	}
	p := &process{name: name, id: pid, group: group, logPath: logPath, exited: make(chan struct{})}
	go p.awaitExit(fd)
	return p, nil
}

// awaitExit waits until the pidfd says the adopted process has exited.
// Its status goes to its parent, not to the bench.
func (p *process) awaitExit(pidfd int) {
	defer unix.Close(pidfd)
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	var err error
	for {
		if _, err = unix.Poll(fds, -1); !errors.Is(err, unix.EINTR) {
			break
		}
	}
	p.waitErr = errors.New("exited; its status went to its parent")
	if err != nil {
		p.waitErr = fmt.Errorf("waiting for its exit: %w", err)
	}
	p.exitedAt = time.Now()
	close(p.exited)
}

func (p *process) pid() int { return p.id }

// pgid is the process group the process runs in: its own for one the
// bench started, the group it was born into for an adopted one.
func (p *process) pgid() int { return p.group }

// alive returns an error, with the tail of the process's log, once it has
// exited.
func (p *process) alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited (%v): %s", p.name, p.waitErr, p.logTail())
	default:
		return nil
	}
}

// logTail returns the last lines of what the process wrote.
func (p *process) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.Join(lines, " | ")
}

// waitListening polls /proc/net until every port is bound, the process dies,
// or the timeout passes.
func (p *process) waitListening(ports []portSpec, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, ps := range ports {
		for !listening(ps.proto, ps.port) {
			if err := p.alive(); err != nil {
				return err
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: %s port %d not listening after %v: %s",
					p.name, ps.proto, ps.port, timeout, p.logTail())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// stop sends SIGTERM to the process group, then SIGKILL if it is still there
// after grace, and waits for the leader to be reaped.
func (p *process) stop(grace time.Duration) error {
	pgid := p.pgid()
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.exited
	}
	// Children that outlived the leader (socat's per-connection forks) go too.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return nil
}

// portSpec names a port a forwarder must have bound before it is ready.
type portSpec struct {
	proto string // "tcp" or "udp"
	port  int
}
