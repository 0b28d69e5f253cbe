package forward

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/proxyhdr"
)

// Why a TLS handshake failed, the reason label of the handshake counters
// and the "reason" field of the warning line.
const (
	TLSBadCertificate  = "bad_certificate"   // not valid for its use or name, or a bad signature
	TLSUnknownCA       = "unknown_authority" // signed by a CA this side does not trust
	TLSExpired         = "expired"           // expired or not yet valid
	TLSNoCertificate   = "no_certificate"    // a client certificate is required and none came
	TLSNotTLS          = "not_tls"           // the peer spoke something else (plaintext)
	TLSTimeout         = "timeout"           // no complete handshake within the connect timeout
	TLSClosed          = "closed"            // the peer hung up or reset mid-handshake
	TLSProtocol        = "protocol"          // anything else: versions, ciphers, alerts
	numHandshakeReason = 8
)

var handshakeReasons = [numHandshakeReason]string{
	TLSBadCertificate, TLSUnknownCA, TLSExpired, TLSNoCertificate,
	TLSNotTLS, TLSTimeout, TLSClosed, TLSProtocol,
}

// Handshakes counts the TLS handshakes of one side of a listener.
type Handshakes struct {
	OK      atomic.Uint64 // full handshakes
	Resumed atomic.Uint64 // handshakes that resumed a session (ticket)
	failed  [numHandshakeReason]atomic.Uint64
	recent  recent
}

// Failed returns the failed handshakes by reason; reasons never seen are left out.
func (h *Handshakes) Failed() map[string]uint64 {
	out := make(map[string]uint64)
	for i := range h.failed {
		if n := h.failed[i].Load(); n > 0 {
			out[handshakeReasons[i]] = n
		}
	}
	return out
}

// count counts a completed handshake with peer (see HandshakeFailure.Peer).
func (h *Handshakes) count(st tls.ConnectionState, peer string) {
	if st.DidResume {
		h.Resumed.Add(1)
	} else {
		h.OK.Add(1)
	}
	h.recent.ok(peer, time.Now())
}

// fail counts a failed handshake with peer.
func (h *Handshakes) fail(reason, peer string) {
	for i, r := range handshakeReasons {
		if r == reason {
			h.failed[i].Add(1)
			h.recent.failed(i, peer, time.Now())
			return
		}
	}
}

// handshakeReason names why a handshake failed, on either side: a local
// verification error, or the alert the peer sent about ours.
func handshakeReason(err error) string {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	var header tls.RecordHeaderError
	var op *net.OpError
	switch {
	case errors.As(err, &unknown):
		return TLSUnknownCA
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired {
			return TLSExpired
		}
		return TLSBadCertificate
	case errors.As(err, &host):
		return TLSBadCertificate
	case errors.As(err, &header):
		return TLSNotTLS
	case errors.As(err, &op) && op.Op == "remote error":
		return alertReason(op.Err.Error())
	case isTimeout(err):
		return TLSTimeout
	case errors.Is(err, io.EOF), classify(err) == EndReset:
		return TLSClosed
	case strings.Contains(err.Error(), "didn't provide a certificate"):
		return TLSNoCertificate // crypto/tls has no typed error for it
	}
	return TLSProtocol
}

// alertReason maps the alert a verifying peer sent (RFC 8446 section 6).
// crypto/tls reports a received alert as a *net.OpError "remote error"
// around an unexported type, so its text is what can be matched.
func alertReason(alert string) string {
	switch alert {
	case "tls: bad certificate", "tls: unsupported certificate", "tls: revoked certificate",
		"tls: unknown certificate":
		return TLSBadCertificate
	case "tls: expired certificate":
		return TLSExpired
	case "tls: unknown certificate authority":
		return TLSUnknownCA
	case "tls: certificate required":
		return TLSNoCertificate
	}
	return TLSProtocol
}

// secured is what the access line says about TLS on a connection.
type secured struct {
	client   *tls.Conn // the client side, when the listener terminates TLS
	upstream *tls.Conn // the upstream side, when the listener originates TLS
	rule     string    // the ACL line that admitted the client (AdmitTLS)
}

// with notes whether the upstream conn is TLS.
func (s secured) with(upstream net.Conn) secured {
	s.upstream, _ = upstream.(*tls.Conn)
	return s
}

// add writes the TLS fields: resumed (and upstream_resumed when both sides
// are TLS) and the peer certificate's name.
func (s secured) add(ev *zerolog.Event) *zerolog.Event {
	if s.client != nil {
		st := s.client.ConnectionState()
		ev = ev.Bool("resumed", st.DidResume)
		if len(st.PeerCertificates) > 0 {
			ev = ev.Str("peer_cn", st.PeerCertificates[0].Subject.CommonName)
		}
		if s.rule != "" {
			ev = ev.Str("acl", s.rule)
		}
	}
	if s.upstream != nil {
		key := "resumed"
		if s.client != nil {
			key = "upstream_resumed"
		}
		ev = ev.Bool(key, s.upstream.ConnectionState().DidResume)
	}
	return ev
}

// terminate runs the server handshake on a new client within the connect
// timeout, asking AdmitTLS within it (admission). It returns a zero
// secured when the client is gone: refused, failed (one warning line) or
// rejected by the ACL; the slot is released then.
func (l *Listener) terminate(c *net.TCPConn, client netip.AddrPort) secured {
	rc := newRecordConn(c, l.pool)
	var adm *admission
	if l.cfg.AdmitTLS != nil {
		adm = &admission{admit: l.cfg.AdmitTLS, rejected: &l.stats.Rejected, client: client}
		rc.verify = adm.verify
	}
	tc := tls.Server(rc, l.cfg.TLS)
	c.SetDeadline(time.Now().Add(l.cfg.connectTimeout()))
	err := tc.HandshakeContext(l.ctx)
	if err != nil {
		if adm.refused() { // the ACL logged it; crypto/tls sent the alert
			return l.rejectTLS(c, client)
		}
		reason := handshakeReason(err)
		if reason == TLSNotTLS {
			lingerClose(c)
		} else {
			c.Close()
		}
		// One that Close or Shutdown cut short did not fail: neither the
		// metric nor the log counts the relay stopping.
		if l.ctx.Err() == nil {
			l.stats.Handshakes.fail(reason, client.Addr().String())
			l.sampled.Warn().Str("client", client.String()).Str("reason", reason).Err(err).
				Msg("tls handshake failed, client closed")
		}
		l.connDone(client)
		return secured{}
	}
	c.SetDeadline(time.Time{})
	rc.shaken = true
	st := tc.ConnectionState()
	sec := secured{client: tc}
	if adm != nil {
		if !adm.asked { // a Config.TLS that is no certs.Server: ask now
			adm.verify(st)
		}
		if adm.refused() {
			tc.Close()
			return l.rejectTLS(c, client)
		}
		sec.rule = adm.rule
	}
	l.stats.Handshakes.count(st, client.Addr().String())
	l.stats.Accepted.Add(1)
	return sec
}

// rejectTLS ends a client the ACL rejected (admission logged and counted
// it).
func (l *Listener) rejectTLS(c *net.TCPConn, client netip.AddrPort) secured {
	c.Close()
	l.connDone(client)
	return secured{}
}

// admission is a TLS client's ACL decision (Config.AdmitTLS), made within
// the handshake once the client's certificate is verified, through the
// handshake's VerifyConnection (certs.ConnVerifier): a rejected client
// gets an alert (bad_certificate) in place of the session ticket of an
// accepted one, so a box office relay sees that its certificate was
// refused (its probe and its access line say so). Asked on the handshake's
// goroutine.
type admission struct {
	admit    func(netip.AddrPort, *x509.Certificate) (bool, string)
	rejected *atomic.Uint64 // Stats.Rejected: counted before the client hears
	client   netip.AddrPort
	asked    bool
	ok       bool
	rule     string // the deciding line
}

// errACLRejected is the VerifyConnection error of a rejected client.
var errACLRejected = errors.New("forward: the ACL rejected the client's certificate")

func (a *admission) verify(st tls.ConnectionState) error {
	var peer *x509.Certificate
	if len(st.VerifiedChains) > 0 {
		peer = st.PeerCertificates[0]
	}
	a.asked = true
	if a.ok, a.rule = a.admit(a.client, peer); !a.ok {
		a.rejected.Add(1)
		return errACLRejected
	}
	return nil
}

// refused reports whether the ACL was asked and said no.
func (a *admission) refused() bool { return a != nil && a.asked && !a.ok }

// lingerClose ends a client that did not speak TLS with a FIN rather than
// a reset: closing a socket with unread bytes makes the kernel send RST, so
// what the client sent is read and dropped first, bounded in bytes and time.
func lingerClose(c *net.TCPConn) {
	c.CloseWrite()
	c.SetReadDeadline(time.Now().Add(time.Second))
	io.CopyN(io.Discard, c, 64<<10)
	c.Close()
}

// originate runs the client handshake with an upstream just dialled, within
// the connect timeout. On failure up is closed.
func (l *Listener) originate(up net.Conn, addr string) (*tls.Conn, error) {
	rc := newRecordConn(up, l.pool)
	tc := tls.Client(rc, l.cfg.UpstreamTLS(addr))
	up.SetDeadline(time.Now().Add(l.cfg.connectTimeout()))
	if err := tc.HandshakeContext(l.ctx); err != nil {
		reason := handshakeReason(err)
		if l.ctx.Err() == nil { // as in terminate
			l.stats.UpstreamHandshakes.fail(reason, addr)
		}
		up.Close()
		return nil, upstreamTLSError(addr, reason, err)
	}
	up.SetDeadline(time.Time{})
	rc.shaken = true
	l.stats.UpstreamHandshakes.count(tc.ConnectionState(), addr)
	return tc, nil
}

// upstreamTLSError is a failed handshake with an upstream as the error of
// its dial or probe: the reason in the words of the metrics, so that the
// "upstream down" line says why.
func upstreamTLSError(addr, reason string, err error) error {
	return fmt.Errorf("tls with %s (%s): %w", addr, reason, err)
}

// ProbeTLS is the health probe of a listener that originates TLS
// (upstream.Config.Handshake; upstreamTLS is its Config.UpstreamTLS): on c,
// just connected to the upstream spec, the handshake a client's connection
// would make, with the material in force now (a reload's new CA or client
// certificate too), then close_notify. Before it, under proxyProtocol (1
// or 2, as Config.ProxyProtocol), a header that names no client (v1
// UNKNOWN, v2 LOCAL: the specification's form for a proxy's own checks),
// since the upstream expects one first. It closes c. An upstream whose
// certificate has expired or comes from another CA so fails its re-tries
// as it failed the client, with the same reason, and stays down until a
// handshake succeeds. So does one that refuses our client certificate:
// in TLS 1.3 it says so after our side of the handshake is done, and the
// probe waits for that verdict (awaitVerdict). Probes are not counted in
// Stats: they are no client's handshakes.
func ProbeTLS(upstreamTLS func(addr string) *tls.Config, proxyProtocol int) func(ctx context.Context, c net.Conn, spec string) error {
	return func(ctx context.Context, c net.Conn, spec string) error {
		if dl, ok := ctx.Deadline(); ok {
			c.SetDeadline(dl)
		}
		if proxyProtocol != 0 {
			if err := sendHeader(c, proxyhdr.Append(nil, proxyProtocol, netip.AddrPort{}, netip.AddrPort{})); err != nil {
				return err
			}
		}
		v := &verdict{c: c}
		cfg := v.config(upstreamTLS(spec))
		tc := tls.Client(c, cfg)
		start := time.Now()
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return upstreamTLSError(spec, handshakeReason(err), err)
		}
		if err := v.await(ctx, tc, time.Since(start)); err != nil {
			c.Close()
			var refused *refusedError
			if errors.As(err, &refused) {
				return refused.withAddr(spec)
			}
			return err
		}
		return tc.Close()
	}
}

// setWaitDeadline sets the deadline that wakes a pipe's direction waiting
// on c (the idle check, or parkAfter). A TLS conn gets it for reads only:
// crypto/tls makes a write timeout permanent, so a wake-up that lands while
// a write into TLS waits for the peer's window would break the conn for
// good (TestTLSBackpressureOutlivesParkAfter). A write into TLS carries
// the idle timeout itself instead (direction.armTLSWrite), and stop sets a
// past deadline on both ways.
func setWaitDeadline(c net.Conn, t time.Time) {
	if isTLS(c) {
		c.SetReadDeadline(t)
		return
	}
	c.SetDeadline(t)
}

// isTLS reports whether c is a TLS conn (or wraps one the same way).
func isTLS(c net.Conn) bool {
	_, ok := c.(interface{ ConnectionState() tls.ConnectionState })
	return ok
}

// tcpOf returns the TCP socket under c.
func tcpOf(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if rc, ok := c.(*recordConn); ok {
		return rc.Conn
	}
	return c
}
