package daemon

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/daemon/handoff"
	"github.com/edgerelay/relay/ftppassive"
)

// dataPortsProto is the handoff name's protocol for an FTP data-port table;
// its address is the range, "first-last".
const dataPortsProto = "ftp-data"

// dataTables are the FTP data-port tables, one per range, shared by every
// ftp listener with that range and by their successors across reloads.
// A binary upgrade hands them to the new process with the listen sockets,
// so the ports the old process's draining sessions hold are never picked
// by the new one (and the other way round): the data pool is taken over
// without a bind conflict on either side. A table lives while an ftp
// listener, running or draining (a session of a retired listener may hold
// a port to its end), has its range (keep), and at most until the daemon
// is released.
type dataTables struct {
	mu      sync.Mutex // guards the following
	byRange map[[2]uint16]*ftppassive.Ports
}

// adopt maps the tables an upgrade handed over in socks, and forgets them
// there. A table that cannot be mapped is logged and skipped: its range
// gets a new table, and a port the old process holds then costs a bind
// that fails and a second try.
func (t *dataTables) adopt(socks sockets, log zerolog.Logger) {
	for k, f := range socks {
		if k.proto != dataPortsProto {
			continue
		}
		delete(socks, k)
		r, err := parseRange(k.addr)
		var p *ftppassive.Ports
		if err == nil {
			p, err = ftppassive.OpenPorts(f, r[0], r[1])
		}
		if err != nil {
			f.Close()
			log.Warn().Err(err).Str("ports", k.addr).Msg("upgrade: cannot take the ftp data-port table over")
			continue
		}
		t.mu.Lock()
		if t.byRange == nil {
			t.byRange = make(map[[2]uint16]*ftppassive.Ports)
		}
		t.byRange[r] = p
		t.mu.Unlock()
	}
}

// get returns the table for r, made on first use; nil for the zero range
// (the kernel picks) or when no shareable table can be made here (the
// listener then keeps a table of its own).
func (t *dataTables) get(r [2]uint16, log zerolog.Logger) *ftppassive.Ports {
	if r[0] == 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.byRange[r]; ok {
		return p
	}
	p, err := ftppassive.NewSharedPorts(r[0], r[1])
	if err != nil {
		log.Warn().Err(err).Msg("ftp data ports: no shared table; an upgrade will not hand it over")
		return nil
	}
	if t.byRange == nil {
		t.byRange = make(map[[2]uint16]*ftppassive.Ports)
	}
	t.byRange[r] = p
	return p
}

// files duplicates every table for an upgrade.
func (t *dataTables) files() ([]handoff.Socket, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []handoff.Socket
	for r, p := range t.byRange {
		f, err := p.File()
		if err != nil {
			return out, fmt.Errorf("ftp data ports %s: %w", formatRange(r), err)
		}
		out = append(out, handoff.Socket{Proto: dataPortsProto, Addr: formatRange(r), File: f})
	}
	return out, nil
}

// keep unmaps the tables of the ranges not in ranges, which are those of
// every ftp listener running or draining: no session can hold a port of
// the others. Kept, every range a config ever had would keep its table
// (a shared memory file and its mapping) for the process's life, and an
// upgrade would hand them all on to the next process.
func (t *dataTables) keep(ranges [][2]uint16) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for r, p := range t.byRange {
		if !slices.Contains(ranges, r) {
			errs = append(errs, p.Close())
			delete(t.byRange, r)
		}
	}
	return errors.Join(errs...)
}

// close unmaps the tables; every listener must be closed.
func (t *dataTables) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	for r, p := range t.byRange {
		errs = append(errs, p.Close())
		delete(t.byRange, r)
	}
	return errors.Join(errs...)
}

func formatRange(r [2]uint16) string { return fmt.Sprintf("%d-%d", r[0], r[1]) }

func parseRange(s string) ([2]uint16, error) {
	a, b, ok := strings.Cut(s, "-")
	first, err1 := strconv.ParseUint(a, 10, 16)
	last, err2 := strconv.ParseUint(b, 10, 16)
	if !ok || err1 != nil || err2 != nil {
		return [2]uint16{}, fmt.Errorf("ftp data ports %q: not a range", s)
	}
	return [2]uint16{uint16(first), uint16(last)}, nil
}
