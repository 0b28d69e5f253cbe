//go:build !linux

package ftppassive

// ephemeralRange is unknown outside Linux.
func ephemeralRange() (lo, hi uint16, ok bool) { return 0, 0, false }
