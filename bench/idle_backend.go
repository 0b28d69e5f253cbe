package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// idleBackendArg, as the only argument, makes the bench binary serve as the
// idle scenario's echo backend in a process of its own. Ten thousand proxied
// connections take twenty thousand descriptors at the two ends besides the
// forwarder; split over two processes they fit a common 20 000 limit.
const idleBackendArg = "-internal-idle-backend"

// runIdleBackend serves echo on loopback, prints its address, and answers
// each line on stdin with "accepted open" counts until stdin closes.
func runIdleBackend() int {
	s, err := listenTCP(echo)
	if err != nil {
		fmt.Fprintln(os.Stderr, "idle backend:", err)
		return 1
	}
	defer s.close()
	fmt.Println(s.addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Printf("%d %d\n", s.accepted.Load(), s.open.Load())
	}
	return 0
}

// remoteEcho is the parent's handle on the idle backend process.
type remoteEcho struct {
	cmd   *exec.Cmd
	addr  string
	stdin io.WriteCloser

	mu  sync.Mutex // guards out, one question and answer at a time
	out *bufio.Scanner
}

func startRemoteEcho() (*remoteEcho, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, idleBackendArg)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &remoteEcho{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	if !r.out.Scan() {
		r.close()
		return nil, fmt.Errorf("idle backend did not start")
	}
	r.addr = strings.TrimSpace(r.out.Text())
	return r, nil
}

// counts asks the backend how many connections it accepted so far and how
// many are open.
func (r *remoteEcho) counts() (accepted, open int64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := io.WriteString(r.stdin, "?\n"); err != nil {
		return 0, 0, err
	}
	if !r.out.Scan() {
		return 0, 0, fmt.Errorf("idle backend went away")
	}
	_, err = fmt.Sscan(r.out.Text(), &accepted, &open)
	return accepted, open, err
}

// close ends the backend: it exits when its stdin closes.
func (r *remoteEcho) close() {
	r.stdin.Close()
	_ = r.cmd.Wait()
}
