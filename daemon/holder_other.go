//go:build !linux

package daemon

import "net/netip"

// holder cannot tell who holds a port off Linux.
func holder(string, netip.AddrPort) string { return "" }

// Holders cannot tell who holds a port off Linux.
func Holders(string, netip.AddrPort) []int { return nil }
