package admin

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// process reads the process-wide figures of the status: uptime from the
// daemon's start, connections summed over the listeners, descriptors from
// /proc and the soft RLIMIT_NOFILE.
func process(now time.Time, started time.Time, listeners []Snapshot) Process {
	p := Process{FDsOpen: -1, FDsLimit: -1}
	if !started.IsZero() {
		p.UptimeSeconds = now.Sub(started).Seconds()
	}
	for _, s := range listeners {
		if s.Conns != nil {
			p.ConnectionsActive += s.Conns.Active
			p.ConnectionsTotal += s.Conns.Accepted
		}
		if s.UDP != nil {
			p.ConnectionsActive += s.UDP.SessionsActive
			p.ConnectionsTotal += s.UDP.SessionsCreated
		}
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		p.FDsOpen = len(fds) - 1 // ReadDir's own descriptor is listed too
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur <= 1<<31 {
		p.FDsLimit = int(lim.Cur)
	}
	return p
}
