package udpstream

import (
	"fmt"
	"net/netip"
	"os"
)

// A reload that changes a UDP listener hands its listen sockets to the
// replacement instead of binding a second socket beside them (two sockets on
// one port would split new clients between them by SO_REUSEPORT's hash).
// The replacement reads the sockets from then on. Its sessions are for new
// clients; a datagram from a client of the old relay goes to that client's
// old session, which forwards it to the old upstream and sends the replies
// back through its own duplicate of the same socket, until the session
// expires and the old relay has drained. A draining relay's session expires
// when its client has been quiet for SessionTimeout, whatever its upstream
// still sends (port.expire), so the drain ends by itself.

// Files returns a duplicate of each listen socket, in Listen order, for a
// successor's Config.Inherit (the same process on reload, or the next one
// on a binary upgrade). The caller closes them.
func (r *Relay) Files() ([]*os.File, error) {
	files := make([]*os.File, 0, len(r.ports))
	for _, p := range r.ports {
		f, err := p.conn.file()
		if err != nil {
			for _, prev := range files {
				prev.Close()
			}
			return nil, fmt.Errorf("udpstream: dup listen socket %s: %w", p.listen, err)
		}
		files = append(files, f)
	}
	return files, nil
}

// TakeOver makes this relay the only reader of the sockets it took over
// from Config.Replaces: their readers stop (and TakeOver waits for them), so
// no datagram is read by a relay that would drop it as draining; and it puts
// this relay's per-source rate in force over the shared sources
// (limit.Table.TakeOver). Serve calls it too; an owner that must order it
// before other steps calls it first.
func (r *Relay) TakeOver() { r.takeOver() }

func (r *Relay) takeOver() {
	r.takeOverOnce.Do(func() {
		// Its per-source datagram rate is in force from here, not from
		// Listen: a reload that fails after Listen changes nothing.
		if r.rates != nil {
			r.rates.TakeOver()
		}
		for _, p := range r.ports {
			if p.from != nil {
				p.from.yield()
				p.from = nil // the chain in prev keeps it while it has sessions
			}
		}
	})
}

// yield stops this port's reader for good, leaving the socket open for the
// replies of its sessions.
func (p *port) yield() {
	if p.yielded.Swap(true) {
		return
	}
	p.r.mu.Lock()
	serving := p.r.serving
	p.r.mu.Unlock()
	if !serving {
		return // Serve will start a reader that sees yielded and exits
	}
	_ = p.conn.stopReading()
	<-p.readerDone
}

// predecessor returns the port of one of relays bound for spec, or nil.
func predecessor(relays []*Relay, spec string) *port {
	for _, r := range relays {
		for _, p := range r.ports {
			if p.spec == spec {
				return p
			}
		}
	}
	return nil
}

// inherited returns src's session on a predecessor's port, or nil. It walks
// the chain of predecessors (a port replaced twice while an old session
// still runs) and unlinks the ones that have closed, so the chain holds only
// relays that still have sessions to serve.
func (p *port) inherited(src netip.AddrPort) *session {
	var found *session
	p.walkChain(func(q *port) bool {
		found = q.sessions[src]
		return found != nil
	})
	return found
}

// unlinkClosed drops the predecessors that have closed from p's chain. The
// sweep calls it: inherited unlinks them only when a datagram from a
// source p has no session for comes, and until then a drained relay (and
// through its own chain every relay retired before it) stays reachable,
// which a relay reloaded often with few new clients grew by about 30 KiB
// per reload (go run ./bench -soak).
func (p *port) unlinkClosed() {
	if p.prev.Load() != nil {
		p.walkChain(func(*port) bool { return false })
	}
}

// walkChain calls found, under each predecessor's lock, for the
// predecessors in p's chain, nearest first, until it returns true; the
// closed ones it passes are unlinked on the way.
func (p *port) walkChain(found func(q *port) bool) {
	link := &p.prev
	for q := link.Load(); q != nil; q = link.Load() {
		q.mu.Lock()
		hit, closed := found(q), q.closed
		q.mu.Unlock()
		if hit {
			return
		}
		if closed {
			link.CompareAndSwap(q, q.prev.Load())
			continue
		}
		link = &q.prev
	}
}

// Yield stops reading every listen socket for good, because another process
// (the one a binary upgrade started) took them over and reads them now.
// Open sessions keep forwarding their upstreams' replies until they expire;
// their clients' datagrams reach the other process from then on.
func (r *Relay) Yield() {
	for _, p := range r.ports {
		p.yield()
	}
}
