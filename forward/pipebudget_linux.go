package forward

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// pipeBudget returns how many pipe pages a Pool may spend on big pipes:
// -1 (no limit) for a process with CAP_SYS_RESOURCE or CAP_SYS_ADMIN,
// which the kernel does not limit; otherwise half of
// fs.pipe-user-pages-soft.
//
// Why: the kernel counts every pipe page of a user across its processes.
// Once an unprivileged user is over the soft limit (16384 pages, 64 MiB,
// by default), every new pipe gets 2 pages (8 KiB) and F_SETPIPE_SZ fails:
// with the stdlib's 1 MiB pipes that happens at 64 busy splices, and
// throughput falls off a cliff. Spending only half the limit on 1 MiB
// pipes (32 of them) and then taking 64 KiB pipes keeps a pool below the
// limit up to about 32 + 512 busy directions; idle connections hold none.
func pipeBudget() int {
	if privileged() {
		return -1
	}
	raw, err := os.ReadFile("/proc/sys/fs/pipe-user-pages-soft")
	if err != nil {
		return 0
	}
	soft, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return 0
	}
	if soft == 0 {
		return -1 // no soft limit configured
	}
	return soft / 2
}

// privileged reports whether the pipe limits do not apply to this process.
func privileged() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	const want = 1<<unix.CAP_SYS_RESOURCE | 1<<unix.CAP_SYS_ADMIN
	return data[0].Effective&want != 0
}
