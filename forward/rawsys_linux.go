package forward

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// readNow and writeNow are read(2) and write(2) on a nonblocking socket
// without the runtime's syscall bookkeeping (unix.Read and unix.Write go
// through entersyscall/exitsyscall). A call on a nonblocking socket never
// waits, so the scheduler gains nothing from handing the P to another
// thread meanwhile, and each handoff it does make (sysmon retakes a P that
// sits in a syscall for two of its ticks, 20 us and more on a busy 2-core
// box) costs a thread wake-up.
func readNow(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func writeNow(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
