package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// What the soak reads of a relay from outside: its metrics, its log, its
// descriptors as /proc shows them, and its goroutines from a SIGQUIT dump.

// scrape reads the admin endpoint's metrics into name{labels} -> value.
func scrape(addr string) (map[string]float64, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the Prometheus text format's samples.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// errorLines returns the relay's JSON log lines at level error (and any
// Go panic) in the log at path.
func errorLines(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return []string{err.Error()}
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, `"level":"error"`) || strings.Contains(l, `"level":"fatal"`) ||
			strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "fatal error:") {
			lines = append(lines, l)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		lines = append(lines, err.Error())
	}
	return lines
}

// pipeEnds counts the process's descriptors that are pipes.
func pipeEnds(pid int) int64 {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	var n int64
	for _, ent := range ents {
		if t, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, ent.Name())); err == nil && strings.HasPrefix(t, "pipe:") {
			n++
		}
	}
	return n
}

// holdings describes what a process's descriptors are (an old process
// that outlived its bound): kinds counted, most first.
func holdings(pid int) string {
	kinds, err := fdKinds(pid)
	if err != nil {
		return err.Error()
	}
	return summarizeCounts(kinds)
}

// pipeKind is fdKinds' name for a pipe end.
const pipeKind = "pipe"

// fdKinds counts a process's descriptors by kind: a file by its path, a
// pipe end as pipeKind, an anonymous inode by its kind
// ("anon_inode:[eventpoll]"), an IPv4 socket by protocol, addresses and
// TCP state, with the local port of a connected one as "*" (ephemeral:
// another connection to the same peer is the same kind), any other socket
// as "socket".
func fdKinds(pid int) (map[string]int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	sockets := procNetSockets()
	kinds := map[string]int{}
	for _, ent := range ents {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, ent.Name()))
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(target, "socket:["):
			inode := strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")
			target = "socket"
			if desc, ok := sockets[inode]; ok {
				target = desc
			}
		case strings.HasPrefix(target, "pipe:["):
			target = pipeKind
		}
		kinds[target]++
	}
	return kinds, nil
}

// tcpStates names the st column of /proc/net/tcp.
var tcpStates = map[string]string{"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
	"05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}

// procNetSockets maps socket inodes to "proto local->remote state" for
// the IPv4 sockets of /proc/net (the bench's traffic is all on 127.0.0.1).
func procNetSockets() map[string]string {
	out := map[string]string{}
	for _, proto := range []string{"tcp", "udp"} {
		b, err := os.ReadFile("/proc/net/" + proto)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			st := f[3]
			if proto == "tcp" {
				st = tcpStates[st]
			} else {
				st = ""
			}
			local, remote := hexAddr(f[1]), hexAddr(f[2])
			if !strings.HasSuffix(remote, ":0") { // connected: the local port is ephemeral
				if i := strings.LastIndexByte(local, ':'); i > 0 {
					local = local[:i] + ":*"
				}
			}
			out[f[9]] = strings.TrimSpace(fmt.Sprintf("%s %s->%s %s", proto, local, remote, st))
		}
	}
	return out
}

// hexAddr turns /proc/net's "0100007F:1F90" into "127.0.0.1:8080".
func hexAddr(s string) string {
	host, port, ok := strings.Cut(s, ":")
	if !ok || len(host) != 8 {
		return s
	}
	a, err1 := strconv.ParseUint(host, 16, 32)
	p, err2 := strconv.ParseUint(port, 16, 16)
	if err1 != nil || err2 != nil {
		return s
	}
	return fmt.Sprintf("%d.%d.%d.%d:%d", byte(a), byte(a>>8), byte(a>>16), byte(a>>24), p)
}

// goroutineDump ends the process with SIGQUIT, which makes the Go runtime
// write every goroutine's stack to its log, and counts them by class
// (stackCounts).
func goroutineDump(p *process) (map[string]int, error) {
	if err := syscall.Kill(p.pid(), syscall.SIGQUIT); err != nil {
		return nil, fmt.Errorf("goroutine dump of %s: %w", p.name, err)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("no goroutine dump: %s did not exit on SIGQUIT", p.name)
	}
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return nil, err
	}
	counts := stackCounts(string(b))
	if len(counts) == 0 {
		return nil, fmt.Errorf("no goroutine dump in %s", p.logPath)
	}
	return counts, nil
}
