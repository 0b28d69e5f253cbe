package ftppassive

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sync/atomic"
)

// Ports is the table of a data-port range: for each port, the pid of the
// relay process whose session holds it, or 0 when it is free. One table is
// shared by every Proxy with the same range, and across a binary upgrade by
// the old and the new process (NewSharedPorts keeps it in a memfd that File
// hands over and OpenPorts maps), so that a port held by a draining
// session, in this process or in the one being replaced, is never picked
// again until that session lets it go: no bind conflict, no second try.
// Binding stays the final arbiter against other programs on the box.
//
// An entry is taken and given back with a compare-and-swap on its own
// 32-bit word, so processes need no lock between them. Entries of a
// process that died without giving its ports back (killed) are reclaimed
// once no free port is left, unless another process took its pid
// meanwhile.
type Ports struct {
	first, last uint16
	self        uint32   // this process's pid, the owner written on take
	owner       []uint32 // owner[p-first]; in mem when shared
	mem         []byte   // the mapping; nil: owner is private memory
	file        *os.File // the memfd behind mem; nil when private
}

// newPrivatePorts returns a table that lives in this process only (a
// Proxy's own when Config.Ports is nil).
func newPrivatePorts(first, last uint16) *Ports {
	return &Ports{first: first, last: last, self: uint32(os.Getpid()),
		owner: make([]uint32, int(last)-int(first)+1)}
}

// Range is the table's inclusive port range.
func (p *Ports) Range() [2]uint16 { return [2]uint16{p.first, p.last} }

// size is the number of bytes a shared table of the range takes.
func portsSize(first, last uint16) int { return (int(last) - int(first) + 1) * 4 }

// File duplicates the descriptor of a shared table, for the process a
// binary upgrade starts (OpenPorts there).
func (p *Ports) File() (*os.File, error) {
	if p.file == nil {
		return nil, fmt.Errorf("ftppassive: data ports %d-%d: table is not shared", p.first, p.last)
	}
	return dupFile(p.file)
}

// take marks a random free port as this process's and returns it. When no
// port is free it reclaims one a dead process left behind.
func (p *Ports) take() (uint16, bool) {
	n := len(p.owner)
	start := rand.IntN(n)
	for i := range n {
		j := (start + i) % n
		if atomic.LoadUint32(&p.owner[j]) == 0 && atomic.CompareAndSwapUint32(&p.owner[j], 0, p.self) {
			return p.first + uint16(j), true
		}
	}
	for i := range n {
		j := (start + i) % n
		o := atomic.LoadUint32(&p.owner[j])
		if o != 0 && o != p.self && !processAlive(int(o)) && atomic.CompareAndSwapUint32(&p.owner[j], o, p.self) {
			return p.first + uint16(j), true
		}
	}
	return 0, false
}

// put gives port back.
func (p *Ports) put(port uint16) {
	atomic.CompareAndSwapUint32(&p.owner[port-p.first], p.self, 0)
}

// held returns how many ports of the table a live process holds, for
// tests and the log.
func (p *Ports) held() int {
	n := 0
	for j := range p.owner {
		if atomic.LoadUint32(&p.owner[j]) != 0 {
			n++
		}
	}
	return n
}
