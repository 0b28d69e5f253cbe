//go:build !linux

package sockerr

import "syscall"

// Control does nothing off Linux: the relay runs on Linux, and other
// systems have no error queue to ask for.
func Control(string, string, syscall.RawConn) error { return nil }

// Explain returns err: there is no error queue off Linux.
func Explain(_ syscall.RawConn, err error) error { return err }
