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
)

// process is one forwarder process the bench started. It runs in a process
// group of its own, so stopping it also stops the workers or per-connection
// children it forked, and nothing else.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed when Wait has returned
	waitErr error         // valid after exited is closed
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
	p := &process{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go p.reap()
	return p, nil
}

// reap waits for the process so that it never lingers as a zombie.
func (p *process) reap() {
	p.waitErr = p.cmd.Wait()
	close(p.exited)
}

func (p *process) pid() int { return p.cmd.Process.Pid }

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
	pgid := p.pid()
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
