package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
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

// holdings describes what a process's descriptors are, for a soak that
// did not settle: kinds counted, and the sockets with their addresses and
// TCP state as /proc/net shows them.
func holdings(pid int) string {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return err.Error()
	}
	sockets := procNetSockets()
	kinds := map[string]int{}
	for _, ent := range ents {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, ent.Name()))
		if err != nil {
			continue
		}
		if strings.HasPrefix(target, "socket:[") {
			inode := strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")
			if desc, ok := sockets[inode]; ok {
				target = desc
			}
		} else if i := strings.IndexByte(target, '['); i > 0 && !strings.HasPrefix(target, "/") {
			target = target[:i]
		}
		kinds[target]++
	}
	var out []string
	for k, n := range kinds {
		out = append(out, fmt.Sprintf("%d× %s", n, k))
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
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
			out[f[9]] = strings.TrimSpace(fmt.Sprintf("%s %s->%s %s", proto, hexAddr(f[1]), hexAddr(f[2]), st))
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
// write every goroutine's stack to its log, and sums those up: how many
// goroutines wait in each relay function (the innermost frame of the
// module), most first.
func goroutineDump(p *process) (map[string]int, string) {
	if err := syscall.Kill(p.pid(), syscall.SIGQUIT); err != nil {
		return nil, err.Error()
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		return nil, "no goroutine dump: the process did not exit on SIGQUIT"
	}
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return nil, err.Error()
	}
	return summarizeStacks(string(b), "github.com/edgerelay/relay/")
}

// summarizeStacks counts the goroutines of a Go traceback by their
// innermost frame in module (the first line of the stack otherwise) and
// state.
func summarizeStacks(dump, module string) (map[string]int, string) {
	counts := map[string]int{}
	for _, block := range strings.Split(dump, "\n\n") {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		if len(lines) < 2 || !strings.HasPrefix(lines[0], "goroutine ") {
			continue
		}
		state := ""
		if i, j := strings.IndexByte(lines[0], '['), strings.IndexByte(lines[0], ']'); i >= 0 && j > i {
			state = lines[0][i+1 : j]
			if k := strings.IndexByte(state, ','); k >= 0 { // "IO wait, 2 minutes"
				state = state[:k]
			}
		}
		where := lines[1]
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, module) {
				where = l
				break
			}
		}
		if i := strings.LastIndexByte(where, '('); i > 0 {
			where = where[:i]
		}
		counts[strings.TrimPrefix(where, module)+" ["+state+"]"]++
	}
	type row struct {
		where string
		n     int
	}
	var rows []row
	for w, n := range counts {
		rows = append(rows, row{w, n})
	}
	sort.Slice(rows, func(i, j int) bool {
		return rows[i].n > rows[j].n || rows[i].n == rows[j].n && rows[i].where < rows[j].where
	})
	var out []string
	for _, r := range rows {
		out = append(out, fmt.Sprintf("%d× %s", r.n, r.where))
	}
	return counts, strings.Join(out, "; ")
}
