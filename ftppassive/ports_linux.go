package ftppassive

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// NewSharedPorts returns a table for the range in a memfd, so that File can
// hand it to another process. Close unmaps it once no Proxy uses it.
func NewSharedPorts(first, last uint16) (*Ports, error) {
	if first == 0 || first > last {
		return nil, fmt.Errorf("ftppassive: data ports %d-%d: not a range", first, last)
	}
	fd, err := unix.MemfdCreate("relay-ftp-data-ports", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("ftppassive: data-port table: memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "relay-ftp-data-ports")
	if err := f.Truncate(int64(portsSize(first, last))); err != nil {
		f.Close()
		return nil, fmt.Errorf("ftppassive: data-port table: %w", err)
	}
	p, err := mapPorts(f, first, last)
	if err != nil {
		f.Close()
	}
	return p, err
}

// OpenPorts maps the table another process handed over (its File) for the
// range; the range must be the one the table was made for. f stays open
// with the table.
func OpenPorts(f *os.File, first, last uint16) (*Ports, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("ftppassive: data-port table: %w", err)
	}
	if first == 0 || first > last || st.Size() != int64(portsSize(first, last)) {
		return nil, fmt.Errorf("ftppassive: data-port table of %d bytes does not fit range %d-%d", st.Size(), first, last)
	}
	return mapPorts(f, first, last)
}

func mapPorts(f *os.File, first, last uint16) (*Ports, error) {
	mem, err := unix.Mmap(int(f.Fd()), 0, portsSize(first, last), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("ftppassive: data-port table: mmap: %w", err)
	}
	// A mapping is page-aligned, so its words can be used atomically.
	owner := unsafe.Slice((*uint32)(unsafe.Pointer(&mem[0])), len(mem)/4)
	return &Ports{first: first, last: last, self: uint32(os.Getpid()), owner: owner, mem: mem, file: f}, nil
}

// Close unmaps a shared table; call it after every Proxy using it has
// closed. A private table needs no Close.
func (p *Ports) Close() error {
	if p.mem == nil {
		return nil
	}
	p.owner = nil
	err := unix.Munmap(p.mem)
	p.mem = nil
	return errors.Join(err, p.file.Close())
}

func dupFile(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("ftppassive: data-port table: dup: %w", err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// processAlive reports whether pid runs (or may: EPERM says it exists).
func processAlive(pid int) bool {
	return unix.Kill(pid, 0) != unix.ESRCH
}
