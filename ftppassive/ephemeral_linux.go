package ftppassive

import (
	"fmt"
	"os"
)

// ephemeralRange returns the kernel's range for ports of outgoing
// connections (net.ipv4.ip_local_port_range).
func ephemeralRange() (lo, hi uint16, ok bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, false
	}
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
		return 0, 0, false
	}
	return lo, hi, true
}
