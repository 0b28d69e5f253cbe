package upstream

import (
	"errors"
	"strings"
	"syscall"
)

// Cursor walks the failover list of one listen port for one connection.
// It is a value with no allocation of its own: a data plane keeps it on its
// stack.
//
//	c := set.Begin(index)
//	for t := c.Next(); t != nil; t = c.Next() {
//		conn, err := dial(t.String())
//		if err == nil {
//			c.Worked()
//			return conn
//		}
//		c.Failed(err)
//	}
//	// c.Err() is ErrAllDown when nothing was up to try.
type Cursor struct {
	s     *Set
	index int
	j, k  int       // next entry of the list, next target of that entry
	ts    []*Target // the targets of entry j, read when the cursor reaches it
	last  *Target   // what Next returned last
	tried int       // how many targets Next returned
	short bool      // a dial failed for this host's own shortage: that target is still up
}

// Begin returns a Cursor over the failover list of listen port index.
func (s *Set) Begin(index int) Cursor {
	return Cursor{s: s, index: index, k: -1}
}

// Next returns the next upstream address that is up, in the config's order
// (the addresses of a name in the order of its answer), or nil when the
// list is exhausted. Down addresses are skipped without a dial.
func (c *Cursor) Next() *Target {
	list := c.s.lists[c.index]
	for c.j < len(list) {
		e := list[c.j]
		if c.k < 0 {
			c.ts, c.k = c.s.current(e), 0
		}
		for c.k < len(c.ts) {
			t := c.ts[c.k]
			c.k++
			if t.up.Load() {
				c.last = t
				c.tried++
				return t
			}
		}
		// Nothing of e served this connection: it goes past e.
		e.failovers.Add(1)
		c.j, c.k, c.ts = c.j+1, -1, nil
	}
	c.last = nil
	c.exhausted()
	return nil
}

// Failed reports that the dial of what Next returned last failed: that
// address is marked down (and re-tried in the background). A dial that
// failed for want of this host's own resources says nothing of the
// address, which stays up: marking it down would turn a moment of local
// pressure (a descriptor limit reached, ports in TIME_WAIT) into an outage
// of every upstream that outlasts it.
func (c *Cursor) Failed(err error) {
	if c.last == nil {
		return
	}
	if LocalShortage(err) {
		c.short = true
		return
	}
	c.last.markDown(err)
}

// LocalShortage tells whether err is this host running out of something a
// dial needs (so that a data plane logs it as the relay's problem, not the
// upstream's): descriptors (EMFILE, ENFILE), buffers or memory (ENOBUFS,
// ENOMEM), local ports (EADDRNOTAVAIL), or room in an epoll set
// (ENOSPC: the kernel's max_user_watches, met by a data plane that
// registers the new socket before its connect completes).
func LocalShortage(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.EADDRNOTAVAIL, syscall.ENOSPC} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Worked reports that the dial of what Next returned last succeeded; a
// down address comes back up.
func (c *Cursor) Worked() {
	if c.last == nil {
		return
	}
	c.last.markUp("a connection was made")
	c.Opened()
}

// Opened reports that what Next returned last now carries traffic, without
// proof that it answers: a connected UDP socket always "connects". The
// port's outage is over, but the address's health is left alone, so a
// failure reported meanwhile by another session is not undone (a dead UDP
// upstream flapped down, up, down, and logged its outage twice).
func (c *Cursor) Opened() {
	// Marked down since Next returned it: the outage that failure began
	// (or goes on with) is not over.
	if c.last == nil || !c.last.up.Load() {
		return
	}
	if out := &c.s.outage[c.index]; out.Load() {
		out.Store(false)
	}
}

// Err is ErrAllDown when Next found nothing up to try, else nil: the data
// plane then has its own dial errors to report.
func (c *Cursor) Err() error {
	if c.tried == 0 {
		return ErrAllDown
	}
	return nil
}

// Tried counts the addresses Next returned.
func (c *Cursor) Tried() int { return c.tried }

// exhausted logs, once per outage of the port, that no upstream is left:
// clients are closed at once until one comes back. A list of one address
// says no more than that address's "upstream down" line, so it adds none.
func (c *Cursor) exhausted() {
	out := &c.s.outage[c.index]
	// A target whose dial failed for want of this host's own descriptors
	// or buffers is still up: the list ran out, but no upstream is down,
	// and a warning that said so sent the admin to the wrong box.
	if c.short || out.Load() || !out.CompareAndSwap(false, true) || c.s.retired.Load() {
		return
	}
	if list := c.s.lists[c.index]; len(list) == 1 && list[0].name == "" {
		return
	}
	specs := make([]string, 0, len(c.s.lists[c.index]))
	for _, e := range c.s.lists[c.index] {
		specs = append(specs, e.spec)
	}
	c.s.log.Warn().Str("upstream", strings.Join(specs, ",")).
		Msg("every upstream down; clients are closed at once until one answers")
}
