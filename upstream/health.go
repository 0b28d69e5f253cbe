package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/internal/sockerr"
)

// Target is one address of an upstream: what a data plane dials. Its
// state is shared by every listen port and connection that lists it.
type Target struct {
	s     *Set
	entry *entry // the upstream as configured (the first one, if several resolve here)
	addr  netip.AddrPort
	str   string // addr.String(), made once: a dial takes a string

	up atomic.Bool // read on every Next; written under s.mu

	// Guarded by s.mu:
	downSince time.Time
	downs     uint64 // outages so far; a re-try loop ends when its outage does
	gone      bool   // no upstream has this address any more (Set.forgetLocked)
	// reached: the latest failure of this outage came after the connect
	// was made (a TLS handshake, a PROXY header, a refusal the upstream
	// sent); false when the connect itself failed. Set.Reset uses it.
	reached bool
}

// String is the address to dial, "ip:port".
func (t *Target) String() string { return t.str }

// Spec is the upstream as configured, "host:port": for a name, the name
// (a TLS client's server name), not the address.
func (t *Target) Spec() string { return t.entry.spec }

// AddrPort is the address to dial.
func (t *Target) AddrPort() netip.AddrPort { return t.addr }

// Up reports whether the address is up now.
func (t *Target) Up() bool { return t.up.Load() }

// Failed reports that t failed outside a Cursor's walk (a UDP session's
// upstream answered with ICMP unreachable): t is marked down, as
// Cursor.Failed does.
func (t *Target) Failed(err error) { t.markDown(err) }

// markDown records a failure. The first one of an outage logs it and
// starts the background re-try; later ones change nothing.
func (t *Target) markDown(reason error) {
	if !t.up.Load() {
		return
	}
	s := t.s
	s.mu.Lock()
	if !t.up.Load() {
		s.mu.Unlock()
		return
	}
	t.up.Store(false)
	t.downSince = time.Now()
	t.downs++
	t.reached = reached(reason)
	outage, retry := t.downs, !s.closed && !t.gone
	if retry {
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if !s.retired.Load() {
		t.event(s.log.Warn()).Err(reason).Msg("upstream down")
	}
	if retry {
		go t.retryLoop(outage)
	}
}

// markUp ends an outage; why says what showed the address works.
func (t *Target) markUp(why string) {
	if t.up.Load() {
		return
	}
	s := t.s
	s.mu.Lock()
	if t.up.Load() {
		s.mu.Unlock()
		return
	}
	t.up.Store(true)
	down := time.Since(t.downSince)
	s.mu.Unlock()
	if !s.retired.Load() {
		t.event(s.log.Info()).Str("reason", why).Dur("down_for_ms", down).Msg("upstream up")
	}
}

// failedAgain notes a re-try's failure: how far it got is what a reload
// goes by (Set.Reset), and an upstream whose certificate was wrong may
// since have stopped answering at all.
func (t *Target) failedAgain(err error) {
	t.s.mu.Lock()
	t.reached = reached(err)
	t.s.mu.Unlock()
}

// stillDown reports whether outage is the one going on now.
func (t *Target) stillDown(outage uint64) bool {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	return !t.up.Load() && t.downs == outage && !t.gone
}

// retryLoop probes a down address with a growing pause (retryFirst,
// doubling, at most retryCap) until it answers, the outage ends another
// way, or the Set closes.
func (t *Target) retryLoop(outage uint64) {
	defer t.s.wg.Done()
	wait := retryFirst
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-t.s.done:
			return
		case <-timer.C:
		}
		if !t.stillDown(outage) {
			return
		}
		err := t.s.probe(t, true)
		if err == nil {
			t.markUp("a probe answered")
			return
		}
		t.failedAgain(err)
		wait = min(2*wait, t.s.retryCap())
		timer.Reset(wait)
	}
}

// checkLoop runs the active checks every Health.Interval until Close.
func (s *Set) checkLoop() {
	defer s.wg.Done()
	tick := time.NewTicker(s.cfg.Health.Interval)
	defer tick.Stop()
	for {
		s.checkRound()
		select {
		case <-s.done:
			return
		case <-s.quiet:
			return
		case <-tick.C:
		}
	}
}

// checkRound probes every address that is up, all at once, and marks down
// those that fail. Down addresses are left to their re-try loop.
func (s *Set) checkRound() {
	var wg sync.WaitGroup
	seen := make(map[*Target]bool)
	for _, e := range s.entries {
		for _, t := range s.current(e) {
			if seen[t] || !t.up.Load() {
				continue
			}
			seen[t] = true
			wg.Add(1)
			go s.check(t, &wg)
		}
	}
	wg.Wait()
}

// check is one active probe of t. A probe that failed for want of this
// host's own descriptors, buffers or ports (LocalShortage) says nothing of
// t, as for a data plane's dial (Cursor.Failed): a round probes every
// upstream at once, so marking them down would take every upstream of the
// listener down together, until re-tries a second or more after the
// shortage ended.
func (s *Set) check(t *Target, wg *sync.WaitGroup) {
	defer wg.Done()
	if err := s.probe(t, false); err != nil && s.ctx.Err() == nil && !LocalShortage(err) {
		t.markDown(fmt.Errorf("health check: %w", err))
	}
}

// event starts a state-change line with the upstream's fields.
func (t *Target) event(ev *zerolog.Event) *zerolog.Event {
	ev = ev.Str("upstream", t.entry.spec)
	if t.entry.name != "" {
		ev = ev.Str("address", t.str)
	}
	return ev
}

// udpRetryListen is how long the re-try of a down UDP upstream listens at
// least before it takes silence as up. Linux reports a host on its own LAN
// that does not answer ARP (powered off) only when address resolution
// gives up: 3 s after the first datagram with the default settings (three
// probes a second apart). A re-try that took 1 s of silence as up marked
// such a host up again each time, and the next new session lost its first
// 3 s to it before it moved (TestUDPRetrySeesPoweredOffHost).
const udpRetryListen = 3500 * time.Millisecond

// probe checks whether t answers: a TCP connect (and Config.Handshake on
// it), or for udp a datagram that a closed port answers with ICMP port
// unreachable. retry is set for the re-try of a down upstream.
func (s *Set) probe(t *Target, retry bool) error {
	if s.cfg.Probe != nil {
		ctx, cancel := context.WithTimeout(s.ctx, s.probeTimeout())
		defer cancel()
		return s.cfg.Probe(ctx, t.addr)
	}
	if s.cfg.Network == "udp" {
		timeout := s.probeTimeout()
		if retry && !s.cfg.Health.ExpectReply {
			timeout = max(timeout, udpRetryListen)
		}
		return probeUDP(s.ctx, t.addr, timeout, &s.cfg.Health)
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.probeTimeout())
	defer cancel()
	dial := s.cfg.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	c, err := dial(ctx, "tcp", t.str)
	if err != nil {
		return err
	}
	if s.cfg.Handshake != nil {
		return s.cfg.Handshake(ctx, c, t.entry.spec)
	}
	return c.Close()
}

// probeUDP sends h.Send (by default an empty datagram) from a connected
// socket and waits up to timeout for an ICMP error, which the kernel reports
// on the socket as ECONNREFUSED (port unreachable) or
// EHOSTUNREACH/ENETUNREACH (the socket has IP_RECVERR, without which Linux
// drops host and network unreachable, among them the one a failed ARP
// gives for a powered-off host on the LAN; see internal/sockerr), and the
// error says which ICMP message came and from whom. Without h.ExpectReply
// a reply, or silence, counts as up: UDP cannot tell a silent service from
// a black hole, so only an explicit refusal marks an upstream down. With
// it, only a reply that begins with h.Expect counts as up. ctx ends the
// wait early (Close).
func probeUDP(ctx context.Context, addr netip.AddrPort, timeout time.Duration, h *Health) error {
	nc, err := (&net.Dialer{Control: sockerr.Control}).Dial("udp", addr.String())
	if err != nil {
		return err
	}
	defer nc.Close()
	c := nc.(*net.UDPConn)
	_ = c.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	if _, _, err := c.WriteMsgUDP(h.Send, nil, nil); err != nil {
		return err
	}
	buf := make([]byte, max(len(h.Expect), 512))
	for {
		n, err := c.Read(buf)
		var ne net.Error
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil && (!h.ExpectReply || bytes.HasPrefix(buf[:n], h.Expect)):
			return nil
		case err == nil:
			continue // not the answer asked for; wait on for it
		case errors.As(err, &ne) && ne.Timeout():
			if h.ExpectReply {
				return fmt.Errorf("no answer%s within %s", expected(h.Expect), timeout)
			}
			return nil
		}
		if rc, rerr := c.SyscallConn(); rerr == nil {
			err = sockerr.Explain(rc, err)
		}
		return err
	}
}

// expected describes the start of the answer a probe waits for.
func expected(prefix []byte) string {
	if len(prefix) == 0 {
		return ""
	}
	return fmt.Sprintf(" starting with %q", prefix)
}
