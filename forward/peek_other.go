//go:build !linux

package forward

import (
	"errors"
	"syscall"
)

// Without Linux's recv flags a PROXY header cannot be peeked at: reading
// one fails, and untrusted sources are not checked for one.
func peek(uintptr, []byte, int) (int, error) { return 0, errors.ErrUnsupported }

const (
	peekDontWait = 0
	errAgain     = syscall.EAGAIN
)
