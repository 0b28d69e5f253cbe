package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/edgerelay/relay/upstream"
)

// forwardConn is the plain TCP forward: dial the upstream, start the pipe,
// log when it ends. Its goroutine runs the client->upstream direction
// until that ends or parks (startPipe, inline); the pipe's end calls
// connDone.
func (l *Listener) forwardConn(c net.Conn, a accepted, sec secured) {
	client, index := a.client, a.index
	start := time.Now()
	up, target, header, err := l.dialFor(a)
	if err != nil {
		c.Close()
		l.logDialFailure(client, index, err, start)
		l.connDone(client)
		return
	}
	fc := &forwarded{l: l, listen: l.listens[index], client: client, target: target, start: start, tls: sec.with(up)}
	startPipe(l.ctx, c, up, PipeOptions{
		IdleTimeout: l.cfg.idleTimeout(),
		AtoB:        &l.stats.BytesIn,
		BtoA:        &l.stats.BytesOut,
		Pool:        l.pool,
		parker:      l.parker,
		parkAfter:   l.parkAfter,
		keepAliveB:  l.lateKeepAlive,
		checkFirst:  l.firstCheck(a),
		live:        &l.live,
		proxy:       header,
	}, fc.end, true)
}

// forwarded is what the access line of a running forward needs.
type forwarded struct {
	l      *Listener
	listen string // the relay's address the client connected to
	client netip.AddrPort
	target *upstream.Target
	start  time.Time
	tls    secured
}

// end writes the access line and releases the connection's slot. An
// upstream that refused our client certificate makes it a warning that
// says so.
func (fc *forwarded) end(res Result) {
	ev, msg := fc.l.log.Info(), "connection closed"
	reason := fc.tls.refusal(res)
	if reason != "" {
		ev, msg = fc.l.upstreamRefused(fc.target, reason, res.Err), refusedMsg+": "+reason
	}
	// A logger below info gives a nil event; checking first spares the
	// client address's String (an allocation) and the clock read.
	if ev.Enabled() {
		ev = ev.Str("listen", fc.listen).Str("client", fc.client.String()).Str("upstream", fc.target.String()).
			Int64("bytes_in", res.AtoB).Int64("bytes_out", res.BtoA).
			Dur("duration_ms", time.Since(fc.start)).Str("end", res.End)
		if reason != "" {
			ev = ev.Str("reason", reason)
		}
		ev = fc.tls.add(ev)
		if res.Err != nil {
			ev = ev.Err(res.Err)
		}
		ev.Msg(msg)
	}
	fc.l.connDone(fc.client)
}

// dialError lists every failed attempt of one failover round.
type dialError struct {
	errs []error
}

func (e *dialError) Error() string {
	var b strings.Builder
	for i, err := range e.errs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

func (e *dialError) Unwrap() []error { return e.errs }

// dialUpstream tries the upstreams of port index that are up, in order,
// each within the connect timeout, and returns the first that answers
// (and its Target, which a connection that learns later that it failed
// reports to: upstreamRefused). A
// PROXY header, if given, is its first bytes, before any TLS. A failure
// returns a *dialError, upstream.ErrAllDown when none was up to try, or the
// listener's context error when it is shutting down.
func (l *Listener) dialUpstream(index int, header []byte) (net.Conn, *upstream.Target, error) {
	var failed []error
	cur := l.ups.Begin(index)
	for t := cur.Next(); t != nil; t = cur.Next() {
		c, err := l.dialOne(t.String())
		if err == nil && header != nil {
			err = sendHeader(c, header)
		}
		if err == nil && l.cfg.UpstreamTLS != nil {
			c, err = l.originate(c, t.Spec()) // the name as configured, for SNI and verification
		}
		if err == nil {
			cur.Worked()
			return c, t, nil
		}
		if l.ctx.Err() != nil {
			return nil, nil, l.ctx.Err()
		}
		cur.Failed(err)
		l.stats.DialFailures.Add(1)
		failed = append(failed, err)
	}
	if err := cur.Err(); err != nil {
		return nil, nil, err
	}
	return nil, nil, &dialError{errs: failed}
}

// upstreams takes over cfg.Upstream, or makes a Set over cfg.Upstreams.
func (l *Listener) upstreams() error {
	l.ups = l.cfg.Upstream
	if l.ups != nil || l.cfg.Handler != nil {
		return nil
	}
	cfg := upstream.Config{
		Listener: l.cfg.Name,
		Lists:    l.cfg.Upstreams,
		Timeout:  l.cfg.connectTimeout(),
		Dial:     l.cfg.Dial,
		Log:      l.cfg.Log,
	}
	if l.cfg.UpstreamTLS != nil {
		cfg.Handshake = ProbeTLS(l.cfg.UpstreamTLS, l.cfg.ProxyProtocol)
	}
	s, err := upstream.New(cfg)
	if err != nil {
		return fmt.Errorf("forward: %w", err)
	}
	l.ups = s
	return nil
}

func (l *Listener) closeUpstreams() {
	if l.ups != nil {
		l.ups.Close()
	}
}

// dialOne makes one connection attempt to addr within the connect timeout.
func (l *Listener) dialOne(addr string) (net.Conn, error) {
	deadline := time.Now().Add(l.cfg.connectTimeout())
	if l.netDialer != nil {
		if _, err := netip.ParseAddrPort(addr); err == nil {
			return l.netDialer.DialContext(dialContext{l.ctx, deadline}, "tcp", addr)
		}
	}
	ctx, cancel := context.WithDeadline(l.ctx, deadline)
	defer cancel()
	return l.dialer(ctx, "tcp", addr)
}

// dialContext is the context of one dial of an IP address by the
// listener's net.Dialer: the listener's context (Close and Shutdown
// interrupt the dial) with the attempt's deadline.
//
// Why not context.WithDeadline: it arms a timer and registers a child
// with the listener's context on every dial, an allocation and a lock
// each. net.Dialer needs neither for a connect: it arms the socket's
// write deadline from Deadline (it does so when Done is non-nil, which
// the listener's cancellable context guarantees), and a connect that
// outlives it fails with "i/o timeout". No channel has to close at the
// deadline, so dialContext is only handed to the net.Dialer, and only for
// IP addresses: a host name's DNS lookup would wait on Done.
type dialContext struct {
	context.Context
	deadline time.Time
}

func (c dialContext) Deadline() (time.Time, bool) { return c.deadline, true }

// logDialFailure writes the one line a client costs when no upstream
// answered: a warning with every error, no stack trace. It counts the
// client in Stats.Unreachable unless the listener is closing.
func (l *Listener) logDialFailure(client netip.AddrPort, index int, err error, start time.Time) {
	upstreams := joinAddrs(l.cfg.Upstreams[index])
	if l.ctx.Err() != nil {
		l.log.Info().Str("listen", l.listens[index]).Str("client", client.String()).Str("upstream", upstreams).
			Dur("duration_ms", time.Since(start)).Str("end", EndShutdown).Msg("connection closed")
		return
	}
	l.stats.Unreachable.Add(1)
	if errors.Is(err, upstream.ErrAllDown) {
		// The outage is logged once by the upstream Set; each client
		// costs an access line only.
		l.log.Info().Str("listen", l.listens[index]).Str("client", client.String()).Str("upstream", upstreams).
			Dur("duration_ms", time.Since(start)).Str("end", EndUnreachable).Err(err).
			Msg("connection closed")
		return
	}
	msg := "upstream unreachable, client closed"
	if shortOfResources(err) {
		// No upstream was at fault and none was marked down: say so,
		// or the admin goes looking at the wrong box.
		msg = "relay out of descriptors, buffers or ports, client closed"
	}
	l.log.Warn().Str("listen", l.listens[index]).Str("client", client.String()).Str("upstream", upstreams).
		Dur("duration_ms", time.Since(start)).Str("end", EndUnreachable).Err(err).
		Msg(msg)
}

// shortOfResources tells whether every attempt of a failed dial failed for
// want of this host's own resources (upstream.LocalShortage).
func shortOfResources(err error) bool {
	var de *dialError
	if !errors.As(err, &de) {
		return upstream.LocalShortage(err)
	}
	for _, e := range de.errs {
		if !upstream.LocalShortage(e) {
			return false
		}
	}
	return len(de.errs) > 0
}

func joinAddrs(addrs []string) string { return strings.Join(addrs, ",") }
