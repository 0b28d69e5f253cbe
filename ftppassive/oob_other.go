//go:build !unix

package ftppassive

import "net"

// setOOBInline is a no-op where SO_OOBINLINE is not available.
func setOOBInline(*net.TCPConn) {}
