package forward

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/upstream"
)

// In TLS 1.3 the client's side of the handshake is done before the server
// has judged the client's certificate: the server reads the certificate
// with the client's Finished and answers after the handshake, with an
// alert when it refuses it (bad_certificate, unknown_ca,
// certificate_expired, certificate_required) and with its session tickets
// when it accepts (crypto/tls, OpenSSL and so stunnel send them to a
// client that offers resumption; a server may also send nothing). So a
// box office learns that the venue refused its certificate only on its
// next read: the probe reads for the verdict (verdict.await), and the
// data path recognises the alert that ends a pipe (secured.refusal).

// verdictWait is how long a probe waits after its handshake for the
// upstream to judge the client certificate it asked for, unless the
// handshake took longer: then twice the handshake. The verdict comes one
// round trip after our Finished plus the upstream's check of one chain,
// both less than the handshake itself took (a round trip and the
// upstream's signature); the second bounds a loaded box or a slow link.
// An upstream that sends tickets ends the wait at once, so only one that
// sends nothing after accepting makes a probe this much longer.
const verdictWait = time.Second

// verdict follows one probe's handshake: whether the upstream asked for a
// client certificate, and whether it accepted it (sent a ticket). It is
// the probe's session cache, which never offers a session: a handshake
// that resumed one of the data path's would not verify the upstream's
// certificate against the CA in force and so prove nothing about the next
// client's full handshake, and the probe's tickets must not take the
// place of those real connections left. Used by the probe's goroutine
// alone (crypto/tls calls it from Handshake and Read).
type verdict struct {
	c        net.Conn // the socket under the probe's TLS conn
	asked    bool     // the upstream asked for a client certificate
	shaken   bool     // the handshake is done: a ticket now is the verdict
	accepted bool     // a ticket came after the handshake
}

var _ tls.ClientSessionCache = (*verdict)(nil)

// config returns a copy of base for the probe: v as its session cache,
// and the client certificate chosen as base would choose it, noting that
// the upstream asked.
func (v *verdict) config(base *tls.Config) *tls.Config {
	cfg := base.Clone()
	cfg.ClientSessionCache = v
	get, own := base.GetClientCertificate, base.Certificates
	cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		v.asked = true
		if get != nil {
			return get(cri)
		}
		for i := range own {
			if cri.SupportsCertificate(&own[i]) == nil {
				return &own[i], nil
			}
		}
		return &tls.Certificate{}, nil // none fits: crypto/tls would send none
	}
	return cfg
}

// Get offers no session: every probe is a full handshake.
func (v *verdict) Get(string) (*tls.ClientSessionState, bool) { return nil, false }

// Put hears of a ticket. After the handshake (TLS 1.2 sends one within
// it) it is the upstream's acceptance, and ends the read waiting for the
// verdict: crypto/tls would go on reading for application data.
func (v *verdict) Put(_ string, cs *tls.ClientSessionState) {
	if cs != nil && v.shaken && !v.accepted {
		v.accepted = true
		v.c.SetReadDeadline(time.Now())
	}
}

// await reads the upstream's verdict on the client certificate of tc, a
// handshake that took took, within verdictWait (or twice took), and
// within ctx: its deadline and its end (the Set closing). Without one
// asked for, or in TLS 1.2, where the upstream judges within the
// handshake, there is nothing to wait for. An alert, or a close, fails
// the probe with its reason; a ticket, data or silence until the bound
// pass it.
func (v *verdict) await(ctx context.Context, tc *tls.Conn, took time.Duration) error {
	if !v.asked || tc.ConnectionState().Version != tls.VersionTLS13 {
		return nil
	}
	v.shaken = true
	until := time.Now().Add(max(verdictWait, 2*took))
	if dl, ok := ctx.Deadline(); ok && dl.Before(until) {
		until = dl
	}
	if err := v.c.SetReadDeadline(until); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { v.c.SetReadDeadline(time.Unix(1, 0)) })
	_, err := tc.Read(make([]byte, 1))
	stop()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err == nil || v.accepted || isTimeout(err) {
		return nil
	}
	if reason := refusedCert(err); reason != "" {
		return &refusedError{reason: reason, err: err}
	}
	return &refusedError{reason: handshakeReason(err), err: fmt.Errorf("after the handshake: %w", err)}
}

// refusedError is an upstream's answer after our side of the handshake.
type refusedError struct {
	reason string
	err    error
}

func (e *refusedError) Error() string {
	if refusedCert(e.err) != "" {
		return refusedMsg + ": " + e.err.Error()
	}
	return e.err.Error()
}

func (e *refusedError) Unwrap() error { return e.err }

// withAddr is e as the error of a probe of addr, worded as a failed
// handshake's (upstreamTLSError), so the "upstream down" line says why.
func (e *refusedError) withAddr(addr string) error {
	return upstreamTLSError(addr, e.reason, e)
}

const refusedMsg = "the upstream rejected our client certificate"

// refusedCert returns the reason of err when it is an alert that says the
// peer refused our certificate (bad, from a CA it does not trust, expired,
// or none when one is required); "" for any other error.
func refusedCert(err error) string {
	var op *net.OpError
	if err == nil || !errors.As(err, &op) || op.Op != "remote error" {
		return ""
	}
	switch r := alertReason(op.Err.Error()); r {
	case TLSBadCertificate, TLSUnknownCA, TLSExpired, TLSNoCertificate:
		return r
	}
	return ""
}

// alertWait bounds refusalBehind's read: an alert sent before the reset
// that ended the pipe is in the socket's queue already (TCP delivers it
// first), so the read finds it at once or there is none.
const alertWait = 10 * time.Millisecond

// refusalBehind returns the upstream's refusal of our client certificate
// when err, which ended a pipe that got nothing from the upstream b, hides
// it: a TLS 1.3 upstream refuses after our handshake and closes, so the
// client's bytes written into the tunnel meanwhile meet its reset, and a
// write error ("broken pipe") can end the pipe before the direction that
// reads b gets to the alert, still queued on b's socket. Otherwise, and
// for a plaintext upstream, it returns err. The pipe has ended: nothing
// else reads b.
func refusalBehind(b net.Conn, err error) error {
	tc, ok := b.(*tls.Conn)
	if !ok || refusedCert(err) != "" {
		return err
	}
	tc.SetReadDeadline(time.Now().Add(alertWait))
	if _, rerr := tc.Read(make([]byte, 1)); refusedCert(rerr) != "" {
		return rerr
	}
	return err
}

// refusal returns the reason when a pipe with a TLS upstream ended on the
// upstream's refusal of our client certificate, before it sent a byte:
// the client's first bytes went into the tunnel (encrypted) and are lost.
// "" otherwise.
func (s secured) refusal(res Result) string {
	if s.upstream == nil || res.BtoA != 0 {
		return ""
	}
	return refusedCert(res.Err)
}

// upstreamRefused handles a connection whose upstream refused our client
// certificate (secured.refusal gave reason): the handshake counts as
// failed with the reason (it also counted as ok when our side of it was
// done: the verdict came after), and t is marked down, so that the next
// clients fail over or are closed at once and the re-tries, whose probe
// waits for the verdict, keep it down until the upstream accepts the
// certificate. It returns the warning line for the caller to finish.
func (l *Listener) upstreamRefused(t *upstream.Target, reason string, err error) *zerolog.Event {
	peer := ""
	if t != nil {
		peer = t.Spec()
	}
	l.stats.UpstreamHandshakes.fail(reason, peer)
	if t != nil {
		t.Failed(upstreamTLSError(t.Spec(), reason, &refusedError{reason: reason, err: err}))
	}
	return l.log.Warn()
}
