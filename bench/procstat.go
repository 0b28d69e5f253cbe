package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ: /proc/<pid>/stat counts CPU time in these units. It
// is 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// procStat is what the bench reads from /proc/<pid>/stat.
type procStat struct {
	pgrp int
	// cpu is utime+stime of the process plus cutime+cstime of the children
	// it has reaped: socat forks a child per connection, and a child's time
	// moves into its parent's cutime when it is reaped.
	cpu time.Duration
}

// parseStat parses the contents of /proc/<pid>/stat. The command name in
// field 2 may hold spaces and parentheses, so the fields are counted from
// the last ')'.
func parseStat(b []byte) (procStat, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return procStat{}, errors.New("no ')' in stat")
	}
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state); pgrp is field 5, utime..cstime are 14..17.
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("stat has %d fields after the name", len(f))
	}
	pgrp, err := strconv.Atoi(f[2])
	if err != nil {
		return procStat{}, fmt.Errorf("pgrp: %w", err)
	}
	var ticks int64
	for _, s := range f[11:15] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("cpu times: %w", err)
		}
		ticks += n
	}
	return procStat{pgrp: pgrp, cpu: time.Duration(ticks) * clockTick}, nil
}

// groupPIDs lists the processes whose process group is pgid. Each forwarder
// runs in a group of its own, so this finds nginx's workers and socat's
// per-connection children.
func groupPIDs(pgid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		st, err := parseStat(b)
		if err == nil && st.pgrp == pgid {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// groupCPU sums the CPU time of every process in the group pgid.
func groupCPU(pgid int) (time.Duration, error) {
	pids, err := groupPIDs(pgid)
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		if st, err := parseStat(b); err == nil {
			total += st.cpu
		}
	}
	return total, nil
}

// groupSleeps sums the voluntary context switches of every thread of every
// process in the group pgid: how often the forwarder went to sleep, waiting
// for something, and had to be woken again.
func groupSleeps(pgid int) (int64, error) {
	pids, err := groupPIDs(pgid)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, pid := range pids {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			continue // exited meanwhile
		}
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
			if err == nil {
				total += statusNumber(b, "voluntary_ctxt_switches:")
			}
		}
	}
	return total, nil
}

// memory is a process group's resident memory and open descriptors.
type memory struct {
	rssKiB int64
	fds    int64
}

// groupMemory sums VmRSS and the entries of /proc/<pid>/fd over the group.
func groupMemory(pgid int) (memory, error) {
	pids, err := groupPIDs(pgid)
	if err != nil {
		return memory{}, err
	}
	var m memory
	for _, pid := range pids {
		one := pidMemory(pid)
		m.rssKiB += one.rssKiB
		m.fds += one.fds
	}
	return m, nil
}

// pidMemory is VmRSS and the entries of /proc/<pid>/fd of one process;
// zero when it has gone.
func pidMemory(pid int) memory {
	var m memory
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m
	}
	m.rssKiB = statusNumber(b, "VmRSS:")
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		m.fds = int64(len(fds))
	}
	return m
}

// statusNumber returns the value of a "Key:   123 kB" or "Key:  123" line
// of /proc/<pid>/status.
func statusNumber(status []byte, key string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, key) {
			continue
		}
		f := strings.Fields(line[len(key):])
		if len(f) == 0 {
			return 0
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		return n
	}
	return 0
}

// listening reports whether something listens on the loopback TCP port, or
// holds the UDP port, according to /proc/net. Checking there rather than by
// connecting keeps the readiness probe from making a connection the
// forwarder would relay to a backend.
func listening(proto string, port int) bool {
	files := []string{"/proc/net/tcp", "/proc/net/tcp6"}
	if proto == "udp" {
		files = []string{"/proc/net/udp", "/proc/net/udp6"}
	}
	want := fmt.Sprintf(":%04X", port)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if netTableHas(b, want, proto == "tcp") {
			return true
		}
	}
	return false
}

// netTableHas scans a /proc/net/{tcp,udp} table for a local address ending
// in portSuffix (":1F90"); for TCP the socket must be in LISTEN (0A).
func netTableHas(table []byte, portSuffix string, needListen bool) bool {
	sc := bufio.NewScanner(bytes.NewReader(table))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasSuffix(f[1], portSuffix) {
			continue
		}
		if !needListen || f[3] == "0A" {
			return true
		}
	}
	return false
}

// machineTimes is the whole machine's CPU time from /proc/stat, in ticks.
type machineTimes struct{ idle, total int64 }

// readMachineTimes reads the first line of /proc/stat.
func readMachineTimes() (machineTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineTimes{}, err
	}
	return parseMachineTimes(b)
}

// parseMachineTimes parses /proc/stat's "cpu" line: user nice system idle
// iowait irq softirq steal …; idle and iowait are the idle time. guest and
// guest_nice are part of user and nice already, and are left out.
func parseMachineTimes(b []byte) (machineTimes, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 6 || f[0] != "cpu" {
		return machineTimes{}, fmt.Errorf("/proc/stat begins %q, not a cpu line", line)
	}
	var m machineTimes
	for i, s := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return machineTimes{}, fmt.Errorf("/proc/stat cpu field %d: %w", i+1, err)
		}
		m.total += n
		if i == 3 || i == 4 {
			m.idle += n
		}
	}
	return m, nil
}

// idleSince is the share of the machine's CPU time that was idle between
// m0 and m, in percent.
func (m machineTimes) idleSince(m0 machineTimes) float64 {
	if m.total <= m0.total {
		return 0
	}
	return 100 * float64(m.idle-m0.idle) / float64(m.total-m0.total)
}
